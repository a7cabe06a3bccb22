"""Training and evaluating any registered model: the loop and what it is made of.

`train` (the loop, read top to bottom) -> `run` (what the loop carries from event to event:
recording rows, checkpoints) -> `epoch` (one epoch's batches), `evaluate` (exact perplexity),
`rundir` (best.pt, a run of another config moved aside), `curves` (TensorBoard, optional),
`progress` (progress lines) -> `step` (one optimizer step), `batches` (the encoded splits as
BPTT batches), `checkpoint` (what a checkpoint holds), `preflight` (memory checks before
allocating), `optim` (optimizers and the plateau lr schedule). Model-agnostic: it builds models
through `lightrnn.registry` and uses only the `lightrnn.core.lm` contract.
"""
