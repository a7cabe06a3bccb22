"""Run by tests/training/test_gpu_paths.py under `torchrun --nproc_per_node 2` (gloo on 127.0.0.1).

Rank 1's model produces a NaN loss, rank 0's a finite one. Both must raise TrainingDiverged
naming rank 1 from the same step (rank 0 must not go on into backward's all-reduce and wait
for a rank that has left), and a collective afterwards must still work on both. Each rank
writes OUT/rank-<r>.json.

    python -m torch.distributed.run --nproc_per_node 2 tests/_diverge_worker.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lightrnn.core import distributed
from lightrnn.registry import build
from lightrnn.training.optim import Optimizers
from lightrnn.training.step import TrainingDiverged, train_step


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    context = distributed.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = build("full_softmax", 20, embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0)
    wrapped = distributed.wrap_ddp(model, context.device)  # broadcasts rank 0's weights
    if context.rank == 1:
        with torch.no_grad():
            model.decoder.bias[0] = float("nan")  # after the broadcast: only rank 1 diverges
    optimizer = Optimizers(model, "adam", 0.01)
    tokens = torch.arange(12).view(2, 6) % 20
    report: dict[str, str] = {"raised": "nothing", "message": ""}
    try:
        train_step(wrapped, optimizer, tokens, (tokens + 1) % 20, None, clip=1.0)
    except TrainingDiverged as error:
        report = {"raised": type(error).__name__, "message": str(error)}
    total = distributed.sum_scalars(1.0)[0]
    report["after"] = "a collective still works" if total == context.world_size else f"sum {total}"
    (out_dir / f"rank-{context.rank}.json").write_text(json.dumps(report))
    distributed.teardown(context)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: torchrun --nproc_per_node 2 tests/_diverge_worker.py OUT")
    main(Path(sys.argv[1]))
