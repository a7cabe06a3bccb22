"""Sub-commands of `lightrnn`; one module each, discovered by `lightrnn.cli`."""
