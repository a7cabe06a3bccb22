"""The benchmark's figure: tokens/s and peak memory against V, a pure function of throughput.csv's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightrnn.core.fileio import atomic_path


def plot_throughput(rows: list[dict[str, Any]], out_png: str | Path) -> list[Path]:
    """Training tokens/s, evaluation tokens/s and peak memory against V, one line per model.

    Writes `out_png` and the same figure as PDF beside it (atomically); returns both paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_throughput: no throughput rows")
    out_png = Path(out_png)
    models = list(dict.fromkeys(row["model"] for row in rows))
    panels = (("train_tokens_per_s", "training tokens/s"), ("eval_tokens_per_s", "evaluation tokens/s"),
              ("peak_memory_bytes", "peak memory (MiB)"))
    figure, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for axis, (column, label) in zip(axes, panels):
        for model in models:
            points = sorted((row["vocab_size"], row[column]) for row in rows if row["model"] == model)
            scale = 2**20 if column == "peak_memory_bytes" else 1
            axis.plot([v for v, _ in points], [value / scale for _, value in points], marker="o", label=model)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("vocabulary size V")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    first = rows[0]
    figure.suptitle(
        f"E = {first['embed_dim']}, H = {first['hidden_dim']}, {first['num_layers']} layers, batch "
        f"{first['batch_size']} x {first['bptt']}, {first['device']}, {first['threads']} thread(s), {first['dtype']}"
    )
    written = []
    for path in (out_png, out_png.with_suffix(".pdf")):
        with atomic_path(path) as temp:
            figure.savefig(temp, dpi=150, format=path.suffix.lstrip("."))
        written.append(path)
    plt.close(figure)
    return written
