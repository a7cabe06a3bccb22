# The two commands that do everything on a fresh clone:
#   make smoke   create the environment if needed, run the whole DAG on tiny generated corpora
#   make test    create the environment if needed, run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The torch requirement installed first, from TORCH_INDEX when set (else pip's configured index).
# From PyPI on Linux, torch==2.13.0 is the CUDA build (several GB); for the CPU-only wheel point
# TORCH_INDEX at PyTorch's CPU wheel index (README: Two commands; the literal URL is there). CI's machine serves the CPU build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
CORES ?= all

.PHONY: venv workflow-installed smoke docs test test-fast bench clean-smoke gpu-check

$(BIN)/lightrnn: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/lightrnn

# The library installs without Snakemake (pip install lightrnn); the workflow targets need the
# workflow extra, which `make venv` installs (through the test extra).
workflow-installed: venv
	@test -x $(BIN)/snakemake || { echo "make: Snakemake is not installed in $(VENV): $(BIN)/python -m pip install -e '.[workflow]'" >&2; exit 2; }

smoke: workflow-installed
	$(BIN)/snakemake --cores $(CORES) --configfile config/smoke.yaml
	$(BIN)/snakemake --configfile config/smoke.yaml --report results/smoke/report.html
	@find results/smoke/tables results/smoke/plots results/smoke/report.html -type f | sort

# The generated blocks of README.md and docs/*.md (the answer, docs/verdict.md, the smoke-run block of
# docs/workflow.md, docs/gpu.md's table, the study block of docs/study.md) and docs/*.png, from results/smoke.
# The tuned study (results/paper/study-cpu-v2) feeds the verdict's perplexity and reallocation rows; the first,
# superseded ablation study (results/paper/study-cpu) only its own block of docs/study.md.
STUDY ?= results/paper/study-cpu-v2
OTHER_STUDY ?= results/paper/study-cpu
docs: smoke
	$(BIN)/lightrnn report readme --results results/smoke --readme README.md --docs docs \
		$(if $(wildcard $(STUDY)/tables/ablation.csv $(STUDY)/tables/study-ratios.csv),--study $(STUDY)) \
		$(if $(filter-out $(STUDY),$(wildcard $(OTHER_STUDY))),--other-study $(OTHER_STUDY))

test: venv
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest benchmarks --benchmark-disable -q

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

# Everything the smoke run wrote (results/smoke, its generated archives, corpora and downloads);
# the next `make smoke` starts from scratch. The paper run's results are not touched.
clean-smoke:
	rm -rf results/smoke resources/smoke

# Every model side by side on this machine, then docs/performance.md's section from the CSVs.
BENCH_RUN ?= paper-run
bench: workflow-installed
	$(BIN)/snakemake --cores $(CORES) bench
	$(BIN)/lightrnn bench readme --bench-dir results/$(BENCH_RUN)/bench --readme README.md

# Every CUDA path on this machine's GPU and the paper-size throughput (docs/gpu.md), within BUDGET
# seconds (default 330: under 6 minutes on a lent H100/H200); no Snakemake, no network. It runs the
# project's .venv/bin/python when there is one (else $(PYTHON)) and asks the module first whether
# the run can start (--check-only: torch importable, a CUDA device, BUDGET a number of seconds in
# (0, 86400], OUT a folder it can create); a refusal is make's one error line, nothing written.
# `make gpu-check DRY_RUN=1 OUT=/tmp/dry` runs the same logic on the CPU at tiny sizes (DRY_RUN empty or 0: the
# real run). OUT and BUDGET reach the module as data, never as make or shell code: their raw text ($(value ...),
# not expanded by make) inside single quotes, each ' written '\'' (the shell's one escape there); the refusal,
# which names OUT, is eval'd as the text $$(shell ...), so make never reads the line it prints as make code.
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
shell_quote = '$(subst ','\'',$(1))'
GPU_CHECK = PYTHONPATH=. $(GPU_PYTHON) -m lightrnn.gpucheck \
	$(if $(value OUT),--out $(call shell_quote,$(value OUT))) \
	$(if $(value BUDGET),--budget-s $(call shell_quote,$(value BUDGET))) \
	$(if $(filter-out 0,$(value DRY_RUN)),--dry-run)
gpu-check:
	$(eval GPU_CHECK_REFUSAL := $$(shell $$(GPU_CHECK) --check-only 2>/dev/null))
	$(if $(GPU_CHECK_REFUSAL),$(error $(GPU_CHECK_REFUSAL)))
	$(GPU_CHECK)
