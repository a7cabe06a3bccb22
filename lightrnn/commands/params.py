"""`lightrnn params`: parameter count and bytes of any registered model, without allocating it."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "params",
        help="parameter count and fp32 bytes of a model size (built on the meta device)",
        description="Build the model on the meta device (no memory), count its parameters, and "
        "print them beside the model's closed-form count.",
    )
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--embed-dim", type=int, required=True)
    parser.add_argument("--hidden-dim", type=int, required=True)
    parser.add_argument("--num-layers", type=int, required=True)
    parser.add_argument(
        "--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
        help="model-specific option (YAML value), e.g. --option tie_weights=true",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def parse_options(texts: list[str], model: str, flag: str = "--option") -> dict:
    """KEY=VALUE option strings -> {key: YAML value}, each value typed by the model's constructor."""
    from lightrnn.config import check_option_values
    from lightrnn.core.loaders import parse_yaml, short
    from lightrnn.registry import check_options

    options = {}
    for option in texts:
        key, separator, value = option.partition("=")
        if not separator or not key:
            raise ValueError(f"{flag} {short(option)}: expected key=value")
        options[key] = parse_yaml(value, f"{flag} {short(option)}")
    check_options(model, options)
    check_option_values(model, options, flag)
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from lightrnn.config import INT_BOUNDS
    from lightrnn.core.loaders import short
    from lightrnn.registry import build, names, param_count
    from lightrnn.training.preflight import meta_options

    if args.model not in names():
        raise ValueError(f"--model {short(args.model)}: unknown model; choose one of: {', '.join(names())}")
    bounds = {"vocab_size": (1, 2**40), **{key: INT_BOUNDS[key] for key in ("embed_dim", "hidden_dim", "num_layers")}}
    for key, (low, high) in bounds.items():
        if not low <= getattr(args, key) <= high:
            raise ValueError(f"--{key.replace('_', '-')} {getattr(args, key)}: must be in [{low}, {high}]")
    options = parse_options(args.options, args.model)
    sizes = dict(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, num_layers=args.num_layers)
    # Nothing is allocated: the model is built on the meta device, and a model with a word table
    # gets a stand-in table (the real one is a permutation of ~V slots: gigabytes at huge V).
    with torch.device("meta"):
        model = build(args.model, args.vocab_size, **sizes, **meta_options(args.model, args.vocab_size, options))
    counted = sum(p.numel() for p in model.parameters())
    closed_form = param_count(args.model, args.vocab_size, **sizes, **options)
    result = {
        "model": args.model, "vocab_size": args.vocab_size, **sizes, **options,
        "params": counted, "params_closed_form": closed_form, "param_bytes_fp32": 4 * counted,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}: {counted:,} parameters ({counted / 1e6:.2f}M), "
              f"{4 * counted:,} bytes fp32 ({4 * counted / 2**20:.1f} MiB); closed form {closed_form:,}"
              + ("" if closed_form == counted else "  (MISMATCH)"))
    return 0 if closed_form == counted else 1
