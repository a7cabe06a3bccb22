#!/usr/bin/env bash
# Run one part of the tuned study (config/study.yaml), then copy its finished runs into a committed folder.
#
#   benchmarks/run_study_part.sh PART MIRROR.yaml DEST [extra snakemake arguments]
#   e.g. benchmarks/run_study_part.sh lightrnn-grid /tmp/mirror.yaml results/paper/study-cpu-v2
#
# Run it from a clean checkout (`git status` empty: rows record the revision, and a `+dirty` one is
# refused by the report). Appends "PART<TAB>start<TAB>end<TAB>exit status" to DEST/parts.tsv (the
# study block shows each call's elapsed time from it) and copies metrics.jsonl, eval.json and
# config.yaml of every finished run (one with eval.json) from results/study/ptb/ to DEST/ptb/
# (never a checkpoint). Then render: python -c "from lightrnn.report.tuned_study import
# write_tuned_study as w; w('DEST')" and `make docs STUDY=DEST`.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PART MIRROR.yaml DEST [snakemake arguments]" >&2
  exit 2
fi
part=$1 mirror=$2 dest=$3
shift 3
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "$0: the checkout has uncommitted changes; commit them first (rows record the revision)" >&2
  exit 2
fi
results=${RESULTS:-results/study}
# Runs an earlier session committed to DEST: back into results/study/ptb/ where absent, so that a
# seeds part finds its grid part's valid ppl (only metrics.jsonl and eval.json's presence are read).
for run in "$dest"/ptb/*--*; do
  [ -d "$run" ] || continue
  [ -e "$results/ptb/$(basename "$run")" ] && continue
  mkdir -p "$results/ptb/$(basename "$run")"
  cp "$run"/* "$results/ptb/$(basename "$run")/"
done
start=$(date -u +%FT%TZ)
status=0
snakemake --cores 2 --configfile config/study.yaml "$mirror" --config "models_to_run=[$part]" --keep-going "$@" \
  || status=$?
mkdir -p "$dest/ptb"
printf '%s\t%s\t%s\t%s\n' "$part" "$start" "$(date -u +%FT%TZ)" "$status" >> "$dest/parts.tsv"
for run in "$results"/ptb/*--*; do
  [ -f "$run/eval.json" ] || continue
  mkdir -p "$dest/ptb/$(basename "$run")"
  cp "$run/metrics.jsonl" "$run/eval.json" "$run/config.yaml" "$dest/ptb/$(basename "$run")/"
done
cp "$results/ptb/meta.json" "$dest/ptb/meta.json"
exit "$status"
