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
python3 - <<'PY'
import base64, json, pathlib
total, big = 0, []
for nb in sorted(pathlib.Path("nbs").glob("*.ipynb")):
    for c in json.loads(nb.read_text())["cells"]:
        for o in c.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                n = len(base64.b64decode(png))
                total += n
                if n > 150_000:
                    big.append(f"{nb.name}: {n // 1000} KB")
print(f"figures in the notebooks: {total / 1e6:.2f} MB" + (f"; larger than 150 KB: {big}" if big else ""))
PY
