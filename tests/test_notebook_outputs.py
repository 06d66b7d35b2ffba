"""The notebooks are read as documentation without being run, so their outputs are committed
(`bash tools/run_notebooks.sh` refreshes them): every cell that draws a figure carries it, the stored images are
compact, and nothing of the machine that ran them (absolute paths of a home folder) leaks into them."""

import base64
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "nbs").glob("*.ipynb"))
# calls that leave a figure behind: the package's plot_* helpers, pyplot, seaborn, image display
# (draw_* helpers draw sprites or write figure files; they show nothing)
DRAWS = re.compile(r"^(?!\s*#).*\b(plot_\w+\(|plt\.(subplots|figure|imshow)\(|sns\.\w+\(|ShowImage\()", re.M)
SKIPPED = ("#| slow", "#| gpu", "#| export", "#| exports", "#| eval: false", "#| hide")


def _code_cells(nb: Path):
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] == "code":
            yield "".join(cell["source"]), cell.get("outputs", [])


def _drawing_cells(nb: Path):
    for src, outputs in _code_cells(nb):
        directives = [line.strip() for line in src.splitlines() if line.startswith("#|")]
        if any(d.startswith(SKIPPED) for d in directives) or not DRAWS.search(src):
            continue
        yield src, outputs


def test_some_notebooks_draw():
    assert sum(1 for nb in NOTEBOOKS for _ in _drawing_cells(nb)) >= 12


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_cell_carries_its_figure(nb):
    missing = [src.splitlines()[0][:80] for src, outputs in _drawing_cells(nb)
               if not any("image/png" in o.get("data", {}) for o in outputs)]
    assert not missing, f"{nb.name}: cells that draw but hold no figure (run tools/run_notebooks.sh): {missing}"


def test_outputs_are_compact_and_machine_free():
    total, big, leaks = 0, [], []
    for nb in NOTEBOOKS:
        for src, outputs in _code_cells(nb):
            for o in outputs:
                png = o.get("data", {}).get("image/png")
                if png:
                    n = len(base64.b64decode(png))
                    total += n
                    if n > 150_000:
                        big.append(f"{nb.name}: {n // 1000} KB")
                text = json.dumps(o)
                if re.search(r"/(root|home/\w+|tmp/tmp\w+)/", text):
                    leaks.append(f"{nb.name}: {src.splitlines()[0][:60] if src else ''}")
    assert not big, f"figures larger than 150 KB: {big}"
    assert total < 5_000_000, f"notebook figures take {total / 1e6:.1f} MB (keep them under 5 MB)"
    assert not leaks, f"outputs that show the local machine's paths: {leaks}"
