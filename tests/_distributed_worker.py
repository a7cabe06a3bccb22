"""Run by tests/training/test_distributed.py under `torchrun --nproc_per_node 2` (gloo on 127.0.0.1).

One launch checks, on every rank: every registered model trains data-parallel through
`lightrnn.training.train.train`; a LightRNN reallocation ends with the same table on both ranks;
`check_replicas_equal` catches a rank whose table differs; `gradient_bytes` equals DDP's bucket
sizes; `evaluate_distributed` counts every target once. Each rank writes OUT/rank-<r>.json with
what the test compares against single-process references.

    python -m torch.distributed.run --nproc_per_node 2 tests/_distributed_worker.py DATA OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lightrnn.core import distributed
from lightrnn.training.batches import TrainPairs, load_split, load_vocab, shard_stream
from lightrnn.config import TrainConfig
from lightrnn.training.evaluate import evaluate_distributed
from lightrnn.method.model import LightRNN
from lightrnn.registry import names
from lightrnn.method.reallocate import reallocate_model
from lightrnn.training.train import train

# Shared with tests/training/test_distributed.py: the per-rank batch here is half the single-process one.
TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.0", "bptt=12", "lr=0.01", "device=cpu"]
LIGHTRNN_RUN = [*TINY, "batch_size=4", "eval_batch_size=2", "rounds=[1,1]", "realloc_method=exact"]


def main(data_dir: Path, out_dir: Path) -> None:
    torch.set_num_threads(1)
    context = distributed.setup(torch.device("cpu"))
    rank = context.rank
    report: dict[str, object] = {"rank": rank, "world_size": context.world_size}

    # 1. The LightRNN run the resume test compares with, then a few steps of every other model
    # (the adaptive softmax leaves tail clusters without gradient in some steps).
    train(TrainConfig.from_yaml(None, [*LIGHTRNN_RUN, "model=lightrnn"]), data_dir, out_dir / "lightrnn")
    for name in names():
        if name != "lightrnn":
            config = TrainConfig.from_yaml(None, [*TINY, f"model={name}", "batch_size=4", "eval_batch_size=2",
                                                  "rounds=[1]", "max_steps_per_epoch=5"])
            train(config, data_dir, out_dir / name)

    # 2. A reallocation from each rank's shard: the same table everywhere.
    words, _ = load_vocab(data_dir)
    stream = load_split(data_dir, "train", len(words))
    torch.manual_seed(3)
    model = LightRNN(len(words), 8, 12, 1, 0.0)
    pairs = TrainPairs(shard_stream(stream, 4, rank, context.world_size), 4, 12)
    realloc = reallocate_model(model, pairs, method="exact")
    table = model.table
    report["realloc"] = {key: realloc[key] for key in ("realloc_objective", "realloc_nll_before", "realloc_nll_after")}
    report["table_rows"], report["table_cols"] = table.rows.tolist(), table.cols.tolist()

    # 3. A replica whose table differs is caught on every rank.
    if rank == 1:
        with torch.no_grad():
            model.word_row[[0, 1]] = model.word_row[[1, 0]]  # swap the two words' slots: a different table
            model.word_col[[0, 1]] = model.word_col[[1, 0]]  # even when they share a row
    try:
        distributed.check_replicas_equal(model, "test")
        report["replica_check"] = "missed"
    except RuntimeError as error:
        report["replica_check"] = str(error)

    # 4. Bytes all-reduced per step: the parameter-size formula against DDP's own buckets.
    torch.manual_seed(0)
    fresh = LightRNN(len(words), 8, 12, 1, 0.0)
    wrapped = distributed.wrap_ddp(fresh, torch.device("cpu"))
    tokens = torch.from_numpy(np.asarray(stream[:25], dtype=np.int64)).view(1, 25)
    wrapped(tokens[:, :-1], tokens[:, 1:]).nll.mean().backward()
    buckets = wrapped._get_ddp_logging_data()["bucket_sizes"]
    report["bucket_bytes"] = sum(int(size) for size in str(buckets).split(","))
    report["gradient_bytes"] = distributed.gradient_bytes(wrapped)

    # 5. Sharded exact evaluation (valid split, 2 rows per rank).
    report["eval"] = evaluate_distributed(fresh, load_split(data_dir, "valid", len(words)), 2, 7, "cpu")

    (out_dir / f"rank-{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    distributed.teardown(context)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: torchrun --nproc_per_node 2 tests/_distributed_worker.py DATA OUT")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
