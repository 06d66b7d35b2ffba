#!/usr/bin/env bash
# The project's test command (README.md; .ci/run calls it after installing).
#   1. notebooks in nbs/ are clean and bacgcn/ is exactly what they export
#   2. every notebook runs (nbdev-test; cells marked `slow` or `gpu` are skipped unless
#      NBDEV_FLAGS="slow gpu" is set)
#   3. pytest; "no tests collected" is a failure
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0 MPLBACKEND=Agg TQDM_MININTERVAL=5

echo "== notebooks clean and in sync with bacgcn/"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r nbs bacgcn "$tmp/"
nbdev-clean --fname nbs >/dev/null
nbdev-export
if ! diff -r -q -x __pycache__ "$tmp/nbs" nbs || ! diff -r -q -x __pycache__ -x '*.egg-info' "$tmp/bacgcn" bacgcn; then
    echo "FAILED: notebooks are not clean or bacgcn/ is out of sync with nbs/."
    echo "        Run 'nbdev-export && nbdev-clean' and commit the result." >&2
    exit 1
fi
echo "ok"

echo "== notebooks run (nbdev-test ${NBDEV_FLAGS:+--flags \"$NBDEV_FLAGS\"})"
nbdev-test --n-workers 2 --timing ${NBDEV_FLAGS:+--flags "$NBDEV_FLAGS"}

echo "== pytest"
set +e
python3 -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "FAILED: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
