"""`bacgcn demo`: the reduced demo from the command line (the paper preset learns from captions alone, every
zero-shot baseline and the tiles' control is scored, the outputs say what made them), and the committed
`results/synth` is the output of the command it names."""

import json
from pathlib import Path

import pytest

from bacgcn.cli import main
from bacgcn.study import demo_config, study_markdown

REPO = Path(__file__).resolve().parents[1]
FIGURES = ["README.md", "methods.png", "ap_by_size.png", "map_per_epoch.png", "similarity_maps.png"]
METHODS = {"bacgcn_paper", "paper_no_reso", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_masked_global",
           "zeroshot_cdul", "zeroshot_clip_tiles", "bacgcn_tiles", "bacgcn_tile_head"}


def test_quick_demo_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # the demo's work folder is ./cache/demo
    assert main(["demo", "--quick", "--out", "out", "--seed", "3"]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["command"] == "bacgcn demo --out out --seed 3 --quick"
    assert m["config"]["eval_seeds"] == [3] and m["config"]["n_train"] == demo_config(3, quick=True).n_train
    assert set(m["methods"]) == METHODS
    for k, v in m["methods"].items():
        assert len(v["mAP"]["values"]) == 1 and 0 < v["mAP"]["mean"] <= 1, k
    curve = [h["mAP"] for h in m["history"]["bacgcn_paper"]]
    assert curve[-1] > curve[0] + 0.05, curve   # trained on caption pseudo labels only, it learned
    assert [h["reso"] for h in m["history"]["bacgcn_paper"]][-1]   # ReSO was on at the end (the paper preset)
    assert m["masking"] == "pixel/black" and m["presets"]["paper"] == {}
    for f in FIGURES:
        assert (tmp_path / "out" / f).stat().st_size > 0, f
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "`bacgcn demo --out out --seed 3 --quick`" in readme and "masking reading pixel/black" in readme
    assert "| `zeroshot_clip_tiles` |" in readme
    assert "results in out/" in capsys.readouterr().out   # says where its outputs are


def test_committed_demo_is_the_output_of_its_command():
    m = json.loads((REPO / "results" / "synth" / "metrics.json").read_text())
    assert m["command"] == "bacgcn demo --out results/synth --seed 0"
    assert m["config"] == json.loads(json.dumps(demo_config(0).__dict__))
    assert set(m["methods"]) == METHODS
    for f in FIGURES:
        assert (REPO / "results" / "synth" / f).exists(), f


@pytest.mark.parametrize("folder", ["synth", "study"])
def test_committed_readmes_are_their_metrics_rendered(folder):
    "Each committed results README is `study_markdown` of the metrics.json beside it: no number edited by hand."
    d = REPO / "results" / folder
    assert (d / "README.md").read_text() == study_markdown(json.loads((d / "metrics.json").read_text()))


def test_one_world_is_shown_without_intervals():
    m = json.loads((REPO / "results" / "synth" / "metrics.json").read_text())
    md = study_markdown(m)
    assert "±" not in md and "*" not in md.split("## The methods on test")[1].split("## In words")[0]
    assert "no interval" in md
