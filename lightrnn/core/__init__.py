"""What every layer of the suite uses: the language-model contract and the ground it stands on.

`lm` (the contract every model honours), `sampling` (one draw), `runtime` (device, autocast,
seeding, peak memory), `distributed` (data-parallel helpers), `errors` (the typed errors),
`fileio` (atomic writes), `csvio` (CSV files), `loaders` (typed readers of every file format,
one-line errors), `runlock` (an output folder's lock), `metrics` (the metrics row schema).
Nothing here imports a model, the training loop, the data pipeline or the report.
"""
