"""`bacgcn study` end to end on its reduced configuration (`quick_config`): every method and control is scored,
the selection rule is applied as written, every interval equals SciPy's on the stored per-world values, design and
evaluation worlds never share a seed or a split, and the README says what the numbers say."""

import json

import numpy as np
import pytest
from scipy import stats

from bacgcn.experiments import ABLATIONS
from bacgcn.study import CLIP_VARIANTS, KNOBS, StudyConfig, demo_config, quick_config, run_study

FIGURES = ["methods.png", "ap_by_size.png", "map_per_epoch.png", "similarity_maps.png"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    metrics = run_study(d / "out", config=quick_config(), work_dir=d / "work", log=lambda *a: None)
    return d, metrics


def t_interval(values) -> tuple[float, float]:
    "SciPy's 95% Student's t interval of the mean (a point when the values do not vary)."
    v = np.asarray(values, dtype=np.float64)
    if not v.std():
        return float(v.mean()), float(v.mean())
    return stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))


def test_every_method_and_control_is_scored(study):
    d, m = study
    assert json.loads((d / "out" / "metrics.json").read_text()) == json.loads(json.dumps(m))
    expected = {"bacgcn_paper", "bacgcn_tuned", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_clip_tiles",
                "bacgcn_tiles", "bacgcn_tile_head"}
    expected |= {f"paper_{k}" for k in ABLATIONS if k != "full"} | {f"paper_{k}" for k in CLIP_VARIANTS}
    assert expected <= set(m["methods"])
    for k, v in m["methods"].items():
        assert len(v["mAP"]["values"]) == 2, k   # one value per evaluation world
        assert all(0 <= x <= 1 for x in v["mAP"]["values"]), k
    assert set(m["vs_control"]) == {"bacgcn_tiles", "bacgcn_tile_head"}
    readme = (d / "out" / "README.md").read_text()
    for k in m["methods"]:
        assert f"| `{k}` |" in readme, k
    for f in FIGURES:
        assert (d / "out" / f).stat().st_size > 5_000, f   # a drawn figure, not an empty canvas
    assert m["diagnostics"]["targets"] and set(m["diagnostics"]["in_range"]) == set(m["diagnostics"]["targets"])


def test_the_rule_is_applied_as_written(study):
    "A knob moves only when the best value's paired 95% interval against the current value lies above zero."
    _, m = study
    assert [r["knob"] for r in m["knobs"]] == ["top_k", "global_views"]
    settings = {"preset": "paper", "clip": {}, "train": {}}
    for r in m["knobs"]:
        vals = {v: np.asarray(s["values"]) for v, s in r["values"].items()}
        assert list(vals) == [str(v) for v in KNOBS[r["knob"]][1]]
        best = max(vals, key=lambda v: vals[v].mean())
        low, _ = t_interval(vals[best] - vals[str(r["start"])])
        assert str(r["best"]) == best
        assert str(r["chosen"]) == (best if low > 0 else str(r["start"])), r["knob"]
        *keys, last = r["path"].split(".")
        node = settings
        for k in keys:
            node = node.setdefault(k, {})
        node[last] = r["chosen"]
    assert m["tuned"] == settings   # the tuned preset is the chain of choices, nothing else
    chosen = m["tiles"]
    val = {k: np.mean(v["values"]) for k, v in chosen["val_mAP"].items()}
    assert f"{chosen['grid']}x{chosen['grid']} w{chosen['weight']}" == max(val, key=val.get)


def test_intervals_equal_scipys(study):
    "Every mean ± CI and every paired difference is Student's t interval of the per-world values."
    _, m = study
    meth = m["methods"]
    for k, v in meth.items():
        for q, s in v.items():
            if np.isfinite(s["values"]).all():
                lo, hi = t_interval(s["values"])
                assert (s["mean"] - s["ci"], s["mean"] + s["ci"]) == pytest.approx((lo, hi), abs=1e-9), (k, q)
    pairs = [(k, "bacgcn_paper", p) for k, p in m["paired_vs_paper"].items()]
    pairs += [(k, "zeroshot_clip_tiles", p) for k, p in m["vs_control"].items()]
    for a, b, p in pairs:
        for q in ("mAP", "small", "large"):
            diff = np.subtract(meth[a][q]["values"], meth[b][q]["values"])
            if np.isfinite(diff).all():
                lo, hi = t_interval(diff)
                assert (p[q]["mean"] - p[q]["ci"], p[q]["mean"] + p[q]["ci"]) == pytest.approx((lo, hi), abs=1e-9)


def test_design_and_evaluation_worlds_stay_apart(study):
    "Design worlds have no test split, evaluation worlds no val split; a config that shares a seed is refused."
    d, m = study
    for s in m["config"]["design_seeds"]:
        (data,) = (d / "work").glob(f"seed{s}-*/data")
        assert (data / "val_cls.txt").exists() and not (data / "test_cls.txt").exists()
    for s in m["config"]["eval_seeds"]:
        (data,) = (d / "work").glob(f"seed{s}-*/data")
        assert (data / "test_cls.txt").exists() and not (data / "val_cls.txt").exists()
    with pytest.raises(ValueError, match=r"seeds \[1\]"):
        StudyConfig(eval_seeds=(1, 100), design_seeds=(0, 1))
    assert not set(StudyConfig().eval_seeds) & ({0} | set(StudyConfig().design_seeds))   # the demo's world too
    assert demo_config().eval_seeds == (0,)


def test_readme_words_follow_the_intervals(study):
    "Each comparison in the README sits on the side of zero its interval is on."
    d, m = study
    readme = (d / "out" / "README.md").read_text()
    for k, p in m["paired_vs_paper"].items():
        if not (k.startswith("paper_") or k == "bacgcn_tuned"):
            continue
        lo, hi = p["mAP"]["mean"] - p["mAP"]["ci"], p["mAP"]["mean"] + p["mAP"]["ci"]
        side = "lower" if hi < 0 else "higher" if lo > 0 else "not measurably different"
        assert f"`{k}` is {side} in test mAP" in readme, k
