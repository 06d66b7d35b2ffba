"""`bacgcn study` end to end on its reduced configuration (two worlds, three knobs): every method, table and figure
is written; the selection rule is applied as written; the confidence intervals equal SciPy's on the stored per-seed
values; the README's statements follow from the numbers."""

import json

import numpy as np
import pytest
from scipy import stats

from bacgcn.study import StudyConfig, findings_markdown, run_study

FIGURES = ["sensitivity.png", "methods.png", "geometry.png", "tta.png"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    metrics = run_study(d / "out", config=StudyConfig.quick(), work_dir=d / "work", log=lambda *a: None)
    return d / "out", metrics


def test_writes_metrics_readme_and_figures(study):
    out, m = study
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    for f in FIGURES:
        assert (out / f).stat().st_size > 10_000, f   # a drawn figure, not an empty canvas
    methods = set(m["methods"])
    assert {"bacgcn", "bacgcn_no_reso", "bacgcn_tta", "bacgcn_start", "zeroshot_clip_global"} <= methods
    assert {"ablation_no_local", "ablation_no_global", "ablation_no_graph", "ablation_no_masking"} <= methods
    assert [r["knob"] for r in m["knobs"]] == ["top_k", "global_views", "tau"]
    assert list(m["config"]["seeds"]) == [0, 1] and m["seconds"] > 0 and m["device"]
    readme = (out / "README.md").read_text()
    for k in methods:
        assert f"| `{k}` |" in readme, k


def test_the_rule_is_applied_as_written(study):
    "A knob moves only when the best value's paired interval against the value before lies above zero."
    _, m = study
    for r in m["knobs"]:
        by_value = {str(v["value"]): v for v in r["values"]}
        best = max(r["values"], key=lambda v: v["mAP"]["mean"])
        assert str(r["best"]) == str(best["value"])
        lower = by_value[str(r["best"])]["vs_start"]["mean"] - by_value[str(r["best"])]["vs_start"]["ci"]
        moved = str(r["chosen"]) != str(r["start"])
        assert moved == (lower > 0 and str(r["best"]) != str(r["start"])), r["knob"]
        assert by_value[str(r["start"])]["vs_start"] == {"mean": 0.0, "ci": 0.0}


def test_intervals_equal_scipys(study):
    "Every paired difference to the full model is Student's t interval of the per-seed differences."
    _, m = study
    full = m["methods"]["bacgcn"]["test"]
    for k, pair in m["paired_vs_bacgcn"].items():
        for q in ("mAP", "small", "large"):
            d = np.subtract(m["methods"][k]["test"][q]["values"], full[q]["values"])
            if not d.std():   # identical runs (bacgcn_start when no knob moved): a zero-width interval
                assert (pair[q]["mean"], pair[q]["ci"]) == (pytest.approx(d.mean(), abs=1e-12), 0.0)
                continue
            lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
            assert pair[q]["mean"] == pytest.approx(d.mean(), abs=1e-12)
            assert pair[q]["mean"] - pair[q]["ci"] == pytest.approx(lo, abs=1e-9), (k, q)
            assert pair[q]["mean"] + pair[q]["ci"] == pytest.approx(hi, abs=1e-9), (k, q)


def test_findings_follow_from_the_intervals():
    "The README's words put each ablation on the side of zero its interval is on."
    ci = lambda mean, half: {"mean": mean, "ci": half}
    pair = {
        "ablation_no_global": {"mAP": ci(-0.10, 0.02)},
        "ablation_no_graph": {"mAP": ci(-0.002, 0.004)},
        "ablation_no_local": {"mAP": ci(0.03, 0.01)},
        "zeroshot_clip_global": {"mAP": ci(-0.014, 0.002)},
    }
    knobs = [{"knob": "rho", "start": 0.5, "chosen": 0.5}, {"knob": "lr", "start": 0.001, "chosen": 0.003}]
    text = "\n".join(findings_markdown({"paired_vs_bacgcn": pair, "knobs": knobs}))
    lower = next(line for line in text.splitlines() if line.startswith("* Removing these lowers"))
    same = next(line for line in text.splitlines() if line.startswith("* Removing these changes"))
    higher = next(line for line in text.splitlines() if line.startswith("* Removing these raises"))
    assert "`no_global` -10.0 [-12.0, -8.0] *" in lower and "no_graph" not in lower
    assert "`no_graph`" in same and "`no_local` +3.0 [+2.0, +4.0] *" in higher
    assert "(`zeroshot_clip_global`): test mAP +1.4 points" in text
    assert "Knobs moved by the rule: lr 0.001 → 0.003." in text
