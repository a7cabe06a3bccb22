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


def run(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from lightrnn.models import build, param_count

    options = {}
    for option in args.options:
        key, separator, value = option.partition("=")
        if not separator:
            raise ValueError(f"--option {option!r}: expected key=value")
        options[key] = yaml.safe_load(value)
    sizes = dict(embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, num_layers=args.num_layers)
    with torch.device("meta"):
        model = build(args.model, args.vocab_size, **sizes, **options)
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
