#!/usr/bin/env bash
# Execute every notebook in nbs/ in place and keep its outputs (figures, tables, printed values), so that
# the notebooks read as documentation without being run. Seeds are fixed in the notebooks; cells marked
# `slow` or `gpu` are not run (their outputs stay empty). Run it after changing code, then commit the notebooks.
#   bash tools/run_notebooks.sh                 # every notebook
#   bash tools/run_notebooks.sh nbs/13_reso.ipynb   # one notebook
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0
unset MPLBACKEND   # the notebooks' figures must be captured inline
nbdev-test "${1:-nbs}" --save --n-workers 1 --timing
nbdev-clean --fname nbs >/dev/null
# the checks CI makes on the stored outputs: every drawing cell holds its figure, images compact, no local paths
python3 -m pytest -q -p no:cacheprovider tests/test_notebook_outputs.py
