"""The one experiment function (`bacgcn.pipeline.run_experiment`) and the commands on it, end to end on a tiny VOC2007
folder (textured JPEGs with coloured squares, difficult-only objects, a corrupt training image) and a tiny random
CLIP saved to a file: extract -> train (ReSO from the last epoch) -> evaluate -> predict; the VOC difficult
conventions against scikit-learn; test images that cannot be read; reruns, resumes and moved folders; the refusals
of a folder that holds another run; the seeded start of the logit biases."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from datasets_fixtures import RUN_FILES, missing_run_files, write_voc
from PIL import Image
from safetensors.torch import save_file
from sklearn.metrics import average_precision_score

from bacgcn import pipeline
from bacgcn.captions import pseudo_labels, read_captions
from bacgcn.cli import build_parser, main
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.data import load_dataset
from bacgcn.experiments import collect_results, experiment_config, experiment_path, main_table, notebook_parameters
from bacgcn.features import FeatureCache, Features, extract_features
from bacgcn.metrics import mean_average_precision
from bacgcn.pipeline import Prepared, Split, build_model, prepare, run_experiment, train_and_evaluate
from bacgcn.protocols import load_split, resolve_data
from bacgcn.reso import SmallRegion
from bacgcn.train import TrainConfig
from bacgcn.vocab import Vocab, load_vocab

CLASSES = ["dog", "cat", "car", "person"]  # the VOC classes the tiny images show
COLOURS = {"dog": (200, 30, 30), "cat": (30, 200, 30), "car": (30, 30, 200), "person": (220, 220, 30)}
TRAIN = {
    "epochs": 2,
    "reso_start_epoch": 2,
    "batch_size": 8,
    "model": {"top_k": 2},
    "reso_config": {"epsilon": 0.6, "min_crop_px": 8},
}
FEATURES = {"num_workers": 0, "batch_size": 16}
N_TRAIN, N_TEST, CORRUPT = 16, 12, "000006"  # the corrupt image is a training image


def cli(*argv) -> tuple[int, str, str]:
    "`bacgcn ARGV...` in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def write_world(d: Path) -> SimpleNamespace:
    "A VOC2007 folder (16 trainval, 12 test), captions in the released format, a tiny CLIP config and weights file."
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(1, N_TRAIN + N_TEST + 1)]
    labels = {i: [CLASSES[k % 4]] + [CLASSES[(k + 1) % 4]] * (k % 3 == 0) for k, i in enumerate(ids)}
    ann = {i: [(c, 0) for c in labels[i]] for i in ids}
    test = ids[N_TRAIN:]
    # difficult-only classes in three test images, each class easy in other test images: the conventions differ
    hard = {t: CLASSES[(N_TRAIN + k + 2) % 4] for k, t in enumerate(test[:3])}
    for t, c in hard.items():
        ann[t].append((c, 1))
    voc = write_voc(d, ann, {"trainval": ids[:N_TRAIN], "test": test})
    for i in ids:
        a = (rng.random((32, 40, 3)) * 60 + 100).astype(np.uint8)
        for c in labels[i] + [c for t, c in hard.items() if t == i]:
            x, y = rng.integers(0, 30), rng.integers(0, 22)
            a[y : y + 10, x : x + 10] = COLOURS[c]
        Image.fromarray(a).save(voc / "JPEGImages" / f"{i}.jpg")
    (voc / "JPEGImages" / f"{CORRUPT}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    caps, recaps = {}, {}
    for i in ids[:N_TRAIN]:
        n = labels[i]
        caps[f"{i}."] = [
            f"a {' and a '.join(n)} on the grass",
            f"a photo of a {n[0]}",
            f"there is a {n[-1]}",
            "a blurry picture",
            f"a {n[0]} in a room",
            "an image",
        ]
        recaps[f"{i}."] = [", ".join(n), f"a {n[-1]}", "a scene", f"a {n[0]}", "grass", "a thing"]
    (d / "caption").mkdir()
    (d / "caption" / "voc2007_captions.json").write_text(json.dumps(caps))
    (d / "caption" / "voc2007_re_captions.json").write_text(json.dumps(recaps))
    (d / "clip.json").write_text(json.dumps(tiny_clip_config()))
    torch.manual_seed(0)  # fixed random weights in a file: every stage and process loads the same CLIP
    save_file(
        load_clip(model_config=str(d / "clip.json"), device="cpu").model.state_dict(), str(d / "clip.safetensors")
    )
    return SimpleNamespace(root=d, voc=voc, captions=d / "caption", ids=ids, test=test, hard=hard, cache=d / "cache")


def clip_settings(w) -> dict:
    return {"model_config": str(w.root / "clip.json"), "pretrained": str(w.root / "clip.safetensors")}


def config(w, out, data_root=None, **over):
    "The ExperimentConfig of a run on the tiny world (through experiment_config, as every entry point builds it)."
    c = {"clip": clip_settings(w), "train": TRAIN, "features": FEATURES}
    return experiment_config(
        "voc2007",
        data_root or w.root,
        w.captions,
        cache_dir=str(w.cache),
        device="cpu",
        out_dir=str(out),
        config={**c, **over.pop("config", {})},
        **over,
    )


def train_args(w, out, data_root=None) -> list:
    "`bacgcn train` arguments for the same run as `config(w, out)`."
    s = {"clip": clip_settings(w), "train": TRAIN, "features": FEATURES, "cache_dir": str(w.cache), "device": "cpu"}
    sets = [x for k, v in s.items() for x in ("-s", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]
    return [
        "train",
        "--protocol",
        "voc2007",
        "--data-root",
        data_root or w.root,
        "--captions",
        w.captions,
        "--out",
        out,
        "--quiet",
        *sets,
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def run(world):
    "One run through the API, its log lines kept."
    lines = []
    out = world.root / "runs" / "api"
    res = run_experiment(config(world, out), progress=False, log=lines.append)
    return SimpleNamespace(out=out, res=res, lines=lines, metrics=json.loads((out / "metrics.json").read_text()))


def stored(folder: Path) -> dict:
    "{file: (size, mtime)} of every file under `folder`."
    return {f: (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.rglob("*")) if f.is_file()}


# ------------------------------------------------------------------------------------------------ one run
def test_a_run_writes_its_folder(world, run):
    m, out = run.metrics, run.out
    assert not missing_run_files(out, RUN_FILES)
    assert (m["protocol"], m["protocol_exact"], m["dataset"], m["preset"]) == ("voc2007", True, "voc2007", "paper")
    assert (m["n_train"], m["n_test"], m["partial"]) == (N_TRAIN - 1, N_TEST, None)  # the corrupt image left out
    assert CORRUPT in (out / "alignment.txt").read_text()
    assert {"bacgcn", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_masked_global", "zeroshot_cdul"} == set(
        m["methods"]
    )
    assert [(h["epoch"], h["reso"]) for h in m["history"]["bacgcn"]] == [(1, False), (2, True)]
    hist = m["history"]["bacgcn"]
    assert hist[1]["n_samples"] > hist[0]["n_samples"] == N_TRAIN - 1  # the ReSO crops joined the training set
    assert set(m["timings_s"]) == {"data", "captions", "features", "training", "evaluation"} and m["reruns"] == []
    csv = pd.read_csv(out / "per_class_ap.csv", index_col="class")
    assert list(csv.index) == load_vocab("voc2007").classes
    ap = m["methods"]["bacgcn"]["ap_per_class"]
    np.testing.assert_allclose(csv["bacgcn"].to_numpy(float), [np.nan if a is None else a for a in ap.values()])
    assert m["methods"]["bacgcn"]["mAP"] == pytest.approx(np.nanmean(csv["bacgcn"].to_numpy(float)), abs=1e-12)


def test_voc_difficult_default_and_the_three_conventions(world, run):
    "The package's default reading of VOC is the protocol's; metrics.json holds mAP under all three conventions."
    test = load_dataset("voc2007", world.root, "test")  # the API's default
    np.testing.assert_array_equal(test.labels, load_split(resolve_data("voc2007", world.root), "test").labels)
    assert (test.labels == -1).sum() == len(world.hard) == 3
    scores = run.res.test_scores
    m = run.metrics["methods"]["bacgcn"]
    assert mean_average_precision(scores, test.labels)["mAP"] == pytest.approx(m["mAP"], abs=1e-12)

    def sk(y):  # scikit-learn's AP per class with positives, -1 entries left out
        aps = [
            average_precision_score(y[y[:, c] >= 0, c], scores[y[:, c] >= 0, c])
            for c in range(y.shape[1])
            if (y[:, c] == 1).any()
        ]
        return float(np.mean(aps))

    y = test.labels
    expected = {"ignore": sk(y), "positive": sk(np.where(y == -1, 1, y)), "negative": sk(np.where(y == -1, 0, y))}
    assert m["mAP_conventions"] == pytest.approx(expected, abs=1e-9)
    assert m["mAP"] == m["mAP_conventions"]["ignore"]
    assert len({round(v, 9) for v in expected.values()}) == 3, "the tiny test set must tell the conventions apart"
    for name, v in run.metrics["methods"].items():  # every method, from the same predictions
        assert set(v["mAP_conventions"]) == {"ignore", "positive", "negative"}, name
    rows = collect_results(world.root / "runs")
    row = rows[(rows["path"] == "api") & (rows["method"] == "bacgcn")].iloc[0]
    assert (row["mAP_positive"], row["mAP_negative"]) == pytest.approx((expected["positive"], expected["negative"]))


def test_the_stage_lines_say_each_stages_own_time(world, run, monkeypatch):
    "A rerun whose data stage takes 2 s: that stage prints 2 s and the next prints its own time, not the sum."
    slow = pipeline.load_splits
    monkeypatch.setattr(pipeline, "load_splits", lambda spec: time.sleep(2) or slow(spec))
    before = json.loads((run.out / "metrics.json").read_text())
    lines = []
    run_experiment(config(world, run.out), progress=False, log=lines.append)
    after = json.loads((run.out / "metrics.json").read_text())
    ends = {
        k: int(s)
        for k, s in (
            l.split("] ")[1].removesuffix(" s").split(": ")
            for l in lines
            if l.startswith("[") and l.endswith(" s") and ": " in l
        )
    }
    times = after["reruns"][-1]
    assert set(ends) == set(times) == {"data", "captions", "features", "training", "evaluation"}
    assert ends == {k: round(v) for k, v in times.items()}
    assert times["data"] >= 2 and ends["captions"] < 2 <= ends["data"]
    # the rerun kept the first run's record and added its own
    assert after["timings_s"] == before["timings_s"] and after["reruns"] == before["reruns"] + [times]
    assert after["methods"] == before["methods"] and after["history"] == before["history"]
    assert not any("features features" in l for l in run.lines + lines)
    assert any(l.startswith("features crops-") for l in run.lines)  # the ReSO crops' cache, named as such


# ------------------------------------------------------------------------------------------------ the commands
def test_extract_train_evaluate_predict_from_the_command_line(world, run, tmp_path):
    rc, _, err = cli(
        "extract",
        "--protocol",
        "voc2007",
        "--data-root",
        world.root,
        "--quiet",
        "-s",
        "device=cpu",
        "-s",
        f"cache_dir={world.cache}",
        "-s",
        f"clip={json.dumps(clip_settings(world))}",
        "-s",
        f"features={json.dumps(FEATURES)}",
    )
    assert rc == 0, err
    out = tmp_path / "cli"
    rc, stdout, err = cli(*train_args(world, out))
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["methods"] == run.metrics["methods"]  # the same run through the command line: the same numbers
    bac = m["methods"]["bacgcn"]
    assert f"bacgcn                   mAP {100 * bac['mAP']:.2f}" in stdout
    assert f"positive {100 * bac['mAP_conventions']['positive']:.2f}" in stdout

    rc, stdout, err = cli(
        "evaluate",
        "--checkpoint",
        out / "model.pt",
        "--protocol",
        "voc2007",
        "--data-root",
        world.root,
        "--json",
        "-s",
        f"cache_dir={world.cache}",
        "-s",
        "device=cpu",
    )
    assert rc == 0, err
    ev = json.loads(stdout)
    assert ev["mAP"] == pytest.approx(bac["mAP"], abs=1e-9) and ev["n_images"] == N_TEST and ev["partial"] is False
    assert ev["mAP_conventions"] == pytest.approx(bac["mAP_conventions"], abs=1e-9)

    csv = tmp_path / "p.csv"
    images = [world.voc / "JPEGImages" / f"{i}.jpg" for i in (world.test[0], CORRUPT)]
    rc, stdout, err = cli("predict", "--checkpoint", out / "model.pt", *images, "--out", csv, "--threshold", 0)
    assert rc == 0, err
    df = pd.read_csv(csv)
    assert [Path(p).name for p in df["image"]] == [f"{world.test[0]}.jpg", f"{CORRUPT}.jpg"]
    assert df["error"].isna().tolist() == [True, False] and "2 images scored (1 unreadable)" in stdout
    assert {f"score:{c}" for c in load_vocab("voc2007").categories} <= set(df.columns)
    x0, y0, x1, y1 = map(int, df.loc[0, "region:dog"].split())
    assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 32  # pixels of the 40 x 32 photo


def test_unreadable_test_images_stop_a_run_unless_allowed(world, tmp_path):
    "A corrupt test image: an error naming it; with allow_missing the rest is scored and marked partial everywhere."
    data = tmp_path / "data"
    shutil.copytree(world.voc.parent, data / "VOCdevkit")
    bad = world.test[4]
    (data / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{bad}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=rf"1 of {N_TEST} test images cannot be read \({bad}: .*allow_missing"):
        run_experiment(config(world, tmp_path / "refused", data), progress=False)
    rc, _, err = cli(*train_args(world, tmp_path / "refused2", data))
    assert rc == 2 and bad in err and "allow_missing" in err and len(err.strip().splitlines()) == 1, err

    results = tmp_path / "results"
    out = results / "voc2007" / "partial"
    rc, stdout, err = cli(*train_args(world, out, data), "-s", "allow_missing=true")
    assert rc == 0, err
    assert "PARTIAL: 1 test images could not be read" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["partial"] == {"n_missing": 1, "missing": [bad]} and m["n_test"] == N_TEST - 1 and m["protocol_exact"]
    lines = []
    run_experiment(config(world, out, data, allow_missing=True), progress=False, log=lines.append)  # a rerun
    assert lines[-1].endswith("(PARTIAL: 1 test images could not be read)")
    rows = collect_results(results)
    assert rows["partial"].all() and len(rows) == len(m["methods"])
    assert main_table(rows).loc["BAC-GCN (this implementation)", "VOC2007"] == "not run"  # kept out of the table

    ev = [
        "evaluate",
        "--checkpoint",
        out / "model.pt",
        "--protocol",
        "voc2007",
        "--data-root",
        data,
        "--json",
        "-s",
        f"cache_dir={world.cache}",
        "-s",
        "device=cpu",
    ]
    rc, _, err = cli(*ev)
    assert rc == 2 and bad in err and "allow_missing" in err, err
    rc, stdout, err = cli(*ev, "-s", "allow_missing=true")
    assert rc == 0, err
    e = json.loads(stdout)
    assert (e["partial"], e["n_failed"], e["n_images"]) == (True, 1, N_TEST - 1)
    assert e["mAP"] == pytest.approx(m["methods"]["bacgcn"]["mAP"], abs=1e-9)


def test_a_folder_of_another_run_is_refused_before_any_work(world, run, tmp_path):
    "Another training setting into a finished run's folder: refused naming the field and the flags that exist."
    before, caches = stored(run.out), sorted(world.cache.iterdir())
    rc, _, err = cli(*train_args(world, run.out), "-s", "train.lr=0.5")
    assert rc == 2 and "holds another run" in err and "train.lr: 0.001 there, 0.5 here" in err, err
    assert stored(run.out) == before and sorted(world.cache.iterdir()) == caches  # nothing written, nothing computed
    # the advice names flags that exist: --out and --overwrite of bacgcn train, -p overwrite of bacgcn run
    assert "bacgcn train --overwrite" in err and "bacgcn run -p overwrite true" in err and "--out" in err
    train = build_parser().parse_args(["train", "--out", "x", "--overwrite"])
    assert train.overwrite and train.out_dir == "x"
    assert "overwrite" in notebook_parameters(experiment_path("run"))
    copy = tmp_path / "copy"
    shutil.copytree(run.out, copy)
    rc, _, err = cli(*train_args(world, copy), "-s", "train.lr=0.5", "--overwrite")  # following the advice
    assert rc == 0, err
    assert json.loads((copy / "run.json").read_text())["identity"]["train"]["lr"] == 0.5
    with pytest.raises(ValueError, match=r"resume is off: continue it \(resume=True, -p resume true\)"):
        run_experiment(config(world, run.out), progress=False, resume=False)
    assert stored(run.out) == before
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "model.pt").write_bytes(b"")
    rc, _, err = cli(*train_args(world, tmp_path / "unknown"))
    assert rc == 2 and "results of an unknown run" in err, err


def test_same_seed_same_numbers_through_the_console_script(world, tmp_path):
    "Two `python -m bacgcn train` processes with one seed write identical metrics; another seed does not."

    def train(out, seed):
        args = [str(a) for a in train_args(world, out)] + ["-s", f"train.seed={seed}", "-s", "train.reso=false"]
        r = subprocess.run([sys.executable, "-m", "bacgcn", *args], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        return json.loads((out / "metrics.json").read_text())["methods"]["bacgcn"]

    a, b = train(tmp_path / "a", 0), train(tmp_path / "b", 0)
    lines = []
    c = run_experiment(
        config(world, tmp_path / "c", config={"train": {**TRAIN, "seed": 1, "reso": False}}),
        progress=False,
        log=lines.append,
    ).metrics["methods"]["bacgcn"]
    assert a == b and a["ap_per_class"] != c["ap_per_class"]


# ------------------------------------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def prep(world):
    "Prepared data of the tiny world (random hard pseudo labels over classes and backgrounds)."
    bb = load_clip(
        model_config=str(world.root / "clip.json"), pretrained=str(world.root / "clip.safetensors"), device="cpu"
    )
    spec = resolve_data("voc2007", world.root)
    train_ds, test_ds = load_split(spec, "trainval"), load_split(spec, "test")
    pl = pseudo_labels(read_captions(*world.captions.glob("voc2007_*captions.json")), "voc2007")
    return prepare(
        load_vocab("voc2007"),
        bb,
        train_ds,
        pl,
        world.cache,
        test_ds,
        names=("t-trainval", "t-test"),
        features=FEATURES,
        progress=False,
    )


def test_resume_after_the_folder_moved_equals_an_uninterrupted_run(prep, tmp_path):
    "Stopped after the ReSO epoch, moved, resumed: the same losses and scores, the crops' cache reused where it is."
    cfg = TrainConfig(**{**TRAIN, "epochs": 3})
    full = train_and_evaluate(prep, cfg, tmp_path / "full", progress=False)
    train_and_evaluate(prep, cfg, tmp_path / "first", progress=False, stop_after=2)
    (crops,) = (tmp_path / "first" / "reso").glob("crops-*")
    shutil.move(tmp_path / "first", tmp_path / "moved")
    kept = stored(tmp_path / "moved" / "reso")
    res = train_and_evaluate(prep, cfg, tmp_path / "moved", progress=False, resume=True)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in full.history], rtol=1e-6)
    np.testing.assert_allclose(res.test_scores, full.test_scores, atol=1e-6)
    assert list((tmp_path / "moved" / "reso").glob("crops-*")) == [tmp_path / "moved" / "reso" / crops.name]
    assert stored(tmp_path / "moved" / "reso") == {
        Path(str(f).replace("/first/", "/moved/")): v for f, v in kept.items()
    }  # not recomputed
    other = load_clip(model_config=tiny_clip_config(), device="cpu")  # same architecture, other (random) weights
    with pytest.raises(ValueError, match="weights_sha256"):
        c = prep.train.cache
        extract_features(list(zip(c.image_ids, c.paths)), other, c.path, FEATURES, progress=False)


def test_given_reso_regions_and_targets(prep, tmp_path):
    "ReSO with given regions crops exactly those; targets replace the pseudo labels; bad inputs refused unwritten."
    n, K = len(prep.train.rows), prep.vocab.n_categories
    cfg = TrainConfig(**{**TRAIN, "reso_config": {"min_crop_px": 8}})
    regions = [SmallRegion(3, 2, (0.1, 0.1, 0.5, 0.5), 0.05), SmallRegion(7, 0, (0.5, 0.5, 0.9, 0.9), 0.05)]
    res = train_and_evaluate(prep, cfg, tmp_path / "fixed", progress=False, reso_regions=regions)
    assert res.history[1]["n_samples"] == n + 2
    stored_regions = json.loads((tmp_path / "fixed" / "reso" / "regions.json").read_text())["regions"]
    assert [(i, o) for i, o, _, _ in stored_regions] == [(3, 2), (7, 0)]
    (crops,) = (tmp_path / "fixed" / "reso").glob("crops-*")
    ids = prep.train.ids
    assert sorted(FeatureCache.open(crops).image_ids) == sorted([f"{ids[3]}#2", f"{ids[7]}#0"])
    with pytest.raises(ValueError, match="targets must be"):
        train_and_evaluate(prep, cfg, tmp_path / "bad1", progress=False, targets=np.zeros((3, K)))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        train_and_evaluate(prep, cfg, tmp_path / "bad2", progress=False, targets=np.full((n, K), 2.0))
    with pytest.raises(ValueError, match="reso_regions given but"):
        train_and_evaluate(
            prep, TrainConfig(epochs=1, reso=False), tmp_path / "bad3", progress=False, reso_regions=regions
        )
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))
    # targets naming class "car" everywhere: it is scored present, above the run on the pseudo labels
    car = load_vocab("voc2007").classes.index("car")
    y = np.zeros((n, K), np.float32)
    y[:, car] = 1
    one = TrainConfig(**{**TRAIN, "reso": False})
    base = train_and_evaluate(prep, one, tmp_path / "pseudo", progress=False)
    over = train_and_evaluate(prep, one, tmp_path / "override", progress=False, targets=y)
    assert over.test_scores[:, car].min() > 0.5 > base.test_scores[:, car].mean()


def test_logit_biases_start_from_a_seeded_random_sample_of_the_training_rows():
    "Category 0 is positive in the first half of the rows only (NUS-WIDE lists 'actor' first): the bias sees 1/2."
    n, D, P = 5000, 8, 4
    rng = np.random.default_rng(0)
    f = {k: rng.normal(size=(n, D)).astype(np.float32) for k in ("global", "g_h", "g_hc")}
    f["patches"] = rng.normal(size=(n, P, D)).astype(np.float32)
    hard = np.zeros((n, 3), np.float32)
    hard[: n // 2, 0] = 1
    hard[:, 1] = rng.random(n) < 0.2
    text = torch.nn.functional.normalize(torch.randn(3, D), dim=-1)
    p = Prepared(
        Vocab("toy", ["a", "b"], ["sky"]),
        None,
        text,
        Split(Features(f), np.arange(n), [str(i) for i in range(n)]),
        hard,
        hard,
        "",
    )
    biases = []
    for seed in (0, 0, 1):
        model = build_model(p, TrainConfig(seed=seed, target="hard", model={"top_k": 2}))
        with torch.no_grad():
            out = model(*(torch.from_numpy(f[k]) for k in ("patches", "global", "g_h", "g_hc")))
        mean_score = torch.sigmoid(out["logits"]).mean(0).numpy()
        np.testing.assert_allclose(mean_score[:2], hard[:, :2].mean(0), atol=0.03)  # the priors of all the rows
        biases.append(model.logit_bias.detach().clone())
    assert torch.equal(biases[0], biases[1]) and not torch.equal(biases[0], biases[2])


def test_a_runs_experiment_json_is_a_config_file_with_its_folder(world, run):
    "`bacgcn train --config <run>/experiment.json` is that run (its folder included); -s and flags go over the file."
    from bacgcn.cli import settings

    f = run.out / "experiment.json"
    args = lambda *a: settings(build_parser().parse_args(["train", "--config", str(f), *a]))
    cfg = experiment_config(**args())
    assert cfg == pipeline.ExperimentConfig(**json.loads(f.read_text())) and cfg.out_dir == str(run.out)
    over = experiment_config(**args("-s", "train.lr=0.5", "--preset", "tuned", "--out", "elsewhere"))
    assert (over.train["lr"], over.preset, over.out_dir) == (0.5, "tuned", "elsewhere")
