#!/bin/bash
# The converged paper study (issue 15), all three parts in order, resumable: rerun after any stop. On a machine that
# lost the study folders, each part first rebuilds the runs its committed snapshot holds (--reuse-from a table).
#
#   SECUREVFL_DATA_DIR=/path/holding/mnist bash examples/studies/paper_mnist_converged.sh [run|snapshot] [PARTS]
#
# run (default): train the parts named in PARTS (default "1 3 2") into $OUT (default runs/), each after the other.
# snapshot: rewrite the tables, reports and plots of every part that has a folder in $OUT and copy them into
#   docs/results/study_paper_converged/{partial,survival,ckks} (no run folders: the table alone resumes a study).
# Run from the repository root; SECUREVFL (default: securevfl) is the command to call.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-runs}
CLI=${SECUREVFL:-securevfl}
DOCS=docs/results/study_paper_converged
STUDIES=examples/studies
declare -A CONFIG=([1]=paper_mnist_converged.toml [2]=paper_mnist_converged_ckks.toml [3]=paper_mnist_converged_survival.toml)
declare -A FOLDER=([1]=study-paper-converged [2]=study-paper-converged-ckks [3]=study-paper-converged-survival)
declare -A SNAPSHOT=([1]=partial [2]=ckks [3]=survival)

from_table() { [ -f "$DOCS/$1/study_runs.json" ] && echo "--reuse-from $DOCS/$1"; }

run_part() {
  local part=$1 extra=""
  [ "$part" = 2 ] && extra="--reuse-from $OUT/${FOLDER[1]}"  # its plaintext runs are part 1's
  # shellcheck disable=SC2046
  $CLI study --config "$STUDIES/${CONFIG[$part]}" --out "$OUT/${FOLDER[$part]}" --workers "${WORKERS:-2}" --quiet \
    $extra $(from_table "${SNAPSHOT[$part]}")
}

snapshot_part() {
  local part=$1 out="$OUT/${FOLDER[$1]}" dest="$DOCS/${SNAPSHOT[$1]}"
  [ -d "$out/runs" ] || return 0
  $CLI study --config "$STUDIES/${CONFIG[$part]}" --out "$out" --report-only --quiet | sed -n 1p
  mkdir -p "$dest"
  cp "$out/study_runs.csv" "$out/study_runs.json" "$out/report.md" "$dest/"
  rm -rf "$dest/plots" && cp -r "$out/plots" "$dest/plots"
  if [ "$part" = 1 ]; then
    python examples/paper_comparison.py "$dest/study_runs.json" --out "$dest/paper_vs_securevfl.md" | tail -1
  fi
}

case "${1:-run}" in
  run) for part in ${2:-1 3 2}; do run_part "$part"; echo "=== part $part exited $? at $(date)"; done ;;
  snapshot) for part in 1 3 2; do snapshot_part "$part"; done ;;
  *) echo "usage: $0 [run|snapshot] [PARTS]" >&2; exit 2 ;;
esac
