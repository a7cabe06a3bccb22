"""Paper-style tables and figures, as pure functions of metrics files.

- `lightrnn.report.layout`: dataset families, model order, `planned_outputs` (what a run renders).
- `lightrnn.report.paper`: the numbers the paper and its official code published, each with its source.
- `lightrnn.report.verdict`: one row per claim of the paper beside what this suite measured.
- `lightrnn.report.results`: reading metrics.jsonl / eval.json, one `RunSummary` per run.
- `lightrnn.report.tables`: table builders (the paper's values beside ours) and the Markdown /
  LaTeX (booktabs) / CSV renderers; `markdown_table` is the one Markdown table writer.
- `lightrnn.report.plots`: the ACLW-French figure, training curves, the size/speed chart.
- `lightrnn.report.build.write_report`: all of it into one folder (the report rule calls it).
Only `layout` is imported here: the Snakefile imports this package at parse time.
"""

from lightrnn.report.layout import planned_outputs

__all__ = ["planned_outputs"]
