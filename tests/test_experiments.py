"""Tests of the experiment layer: every notebook in experiments/ executed under papermill on tiny datasets in the
VOC, COCO, NUS-WIDE and label-list (synthetic benchmark) layouts with a tiny random CLIP; the `parameters` tag
surviving nbdev-clean; the report's "not run" cells; check_data on each kind of missing piece; the run wrapper's
FAILED marker and exit codes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bacgcn.experiments import (ABLATIONS, NOT_REPORTED, NOT_RUN, PROTOCOLS, REPORTED, check_data, cli_check_data, cli_run,
                                collect_results, experiment_path, main_table, parse_params, run_notebook)
from bacgcn.vocab import load_vocab
from datasets_fixtures import write_coco, write_label_list, write_nuswide, write_voc

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["run", "ablation", "report"]
N = 12   # images per split


# ------------------------------------------------------------------------------------------ tiny datasets
def noise_image(path: Path, rng: np.random.Generator, size=(40, 32)) -> None:
    "Overwrite `path` with random colours (the fixture builders write one flat colour)."
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)


def pick_labels(rng, n: int, n_classes: int, pool: int = 4) -> list[list[int]]:
    "1-2 classes per image out of the first `pool` classes, each class present at least once."
    out = [sorted(set(rng.choice(pool, size=rng.integers(1, 3), replace=False).tolist())) for _ in range(n)]
    for c in range(pool): out[c % n] = sorted(set(out[c % n]) | {c})
    return out


def write_captions(folder: Path, stem: str, labels: dict[str, list[str]], backgrounds: list[str]) -> Path:
    "`<stem>_captions.json` and `<stem>_re_captions.json` in the released format: {'<id>.': [6 strings]}."
    folder.mkdir(parents=True, exist_ok=True)
    caps, recaps = {}, {}
    for k, (iid, names) in enumerate(labels.items()):
        bg = backgrounds[k % len(backgrounds)]
        caps[f"{iid}."] = [f"a photo of a {names[0]} on the {bg}", f"a {' and a '.join(names)}", f"there is a {names[-1]}",
                           f"a {names[0]} near the {bg}", "a blurry picture", f"the {bg} with a {names[0]}"]
        recaps[f"{iid}."] = [f"{', '.join(names)}", f"a {names[-1]} and {bg}", "an image", f"a {names[0]}", f"{bg}", "a scene"]
    (folder / f"{stem}_captions.json").write_text(json.dumps(caps))
    (folder / f"{stem}_re_captions.json").write_text(json.dumps(recaps))
    return folder


def make_voc(root: Path, rng) -> tuple[Path, Path]:
    v = load_vocab("voc2007")
    ids = [f"{i:06d}" for i in range(1, 2 * N + 1)]
    lab = dict(zip(ids, pick_labels(rng, 2 * N, v.n_classes)))
    ann = {i: [(v.classes[c], 0) for c in cs] for i, cs in lab.items()}
    ann[ids[-1]].append(("bird", 1))                                  # a difficult object: ignored in the AP
    voc = write_voc(root, ann, {"trainval": ids[:N], "test": ids[N:]})
    for i in ids: noise_image(voc / "JPEGImages" / f"{i}.jpg", rng)
    caps = write_captions(root / "caption", "voc2007", {i: [v.classes[c] for c in lab[i]] for i in ids[:N]}, ["grass", "sky", "road"])
    return root, caps


def make_coco(root: Path, rng) -> tuple[Path, Path]:
    v = load_vocab("coco2014")
    cats = list(enumerate(v.classes, 1))
    train_names = {}
    for split, off in [("train2014", 0), ("val2014", 1000)]:
        images = [(off + i, f"COCO_{split}_{off + i:012d}.jpg") for i in range(N)]
        lab = pick_labels(rng, N, v.n_classes)
        write_coco(root, split, images, cats, [(iid, c + 1, 0) for (iid, _), cs in zip(images, lab) for c in cs])
        for (_, f), cs in zip(images, lab): noise_image(root / split / f, rng)
        if split == "train2014": train_names = {Path(f).stem: [v.classes[c] for c in cs] for (_, f), cs in zip(images, lab)}
    return root, write_captions(root / "caption", "coco2014", train_names, ["grass", "road"])


def make_nuswide(root: Path, rng) -> tuple[Path, Path]:
    v = load_vocab("nuswide")
    train_names = {}
    for split in ["Train", "Test"]:
        rel = [f"{v.classes[k % 4]}/{split}_{k:04d}.jpg" for k in range(N)]
        lab = pick_labels(rng, N, v.n_classes)
        y = np.zeros((N, v.n_classes), np.int8)
        for r, cs in enumerate(lab): y[r, cs] = 1
        write_nuswide(root, split, v.classes, rel, y)
        for p in rel: noise_image(root / "Flickr" / p, rng)
        if split == "Train": train_names = {str(Path(p).with_suffix("")): [v.classes[c] for c in cs] for p, cs in zip(rel, lab)}
    return root, write_captions(root / "caption", "nuswide", train_names, ["sky", "water"])


def make_synthetic(root: Path, rng) -> tuple[Path, Path]:
    "The synthetic benchmark's layout: images/<id>.png, <split>_cls.txt, synth.json, train_(re_)captions.json."
    from bacgcn.synth import synth_vocab
    v = synth_vocab()
    root.mkdir(parents=True, exist_ok=True)
    v.save(root / "synth.json")
    names = {}
    for split in ["train", "test"]:
        ids = [f"{split}_{i:05d}" for i in range(N)]
        lab = pick_labels(rng, N, v.n_classes)
        write_label_list(root / f"{split}_cls.txt", dict(zip(ids, lab)))
        for i in ids: noise_image(root / "images" / f"{i}.png", rng)
        if split == "train": names = {i: [v.classes[c] for c in cs] for i, cs in zip(ids, lab)}
    return root, write_captions(root, "train", names, ["sky", "grass"])


TRAIN = {"batch_size": 8, "model": {"kernel": {"top_k": 4}}, "reso_config": {"epsilon": 0.5, "min_crop_px": 8}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "Every experiment notebook executed once on the tiny datasets (shared by the tests below)."
    from bacgcn.clip import tiny_clip_config
    tmp = tmp_path_factory.mktemp("experiments")
    rng = np.random.default_rng(0)
    results, cache = tmp / "results", tmp / "cache"
    common = dict(clip_model=None, clip_pretrained=None, clip={"model_config": tiny_clip_config()}, epochs=2, reso_start_epoch=2,
                  device="cpu", cache_dir=str(cache), train=TRAIN, features={"num_workers": 0, "batch_size": 16}, n_figure_images=2)
    done = {}
    for protocol, make in [("voc2007", make_voc), ("coco2014", make_coco), ("nuswide", make_nuswide), ("synthetic", make_synthetic)]:
        root, caps = make(tmp / protocol, rng)
        params = dict(protocol=protocol, data_root=str(root), captions_dir=str(caps), **common)
        done[protocol] = run_notebook("run", params, results / protocol / "tiny")
        if protocol == "voc2007": voc_params = params
    ab = {k: v for k, v in voc_params.items() if k != "n_figure_images"}
    done["ablation"] = run_notebook("ablation", {**ab, "variants": ["full", "no_reso"]}, results / "voc2007" / "ablation")
    done["report"] = run_notebook("report", {"results_root": str(results)})
    return results, done


# ---------------------------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("protocol", ["voc2007", "coco2014", "nuswide", "synthetic"])
def test_run_writes_its_folder(runs, protocol):
    results, done = runs
    out = results / protocol / "tiny"
    assert done[protocol] == out / "run.ipynb" and not (out / "FAILED").exists()
    for f in ["metrics.json", "config.json", "history.json", "per_class_ap.csv", "model.pt", "figures/map_per_epoch_and_per_class_ap.png",
              "figures/similarity_maps.png", "figures/masking.png"]:
        assert (out / f).is_file(), f"{protocol}: {f} missing"
    m = json.loads((out / "metrics.json").read_text())
    assert (m["protocol"], m["experiment"], m["n_train"], m["n_test"]) == (protocol, "run", N, N)
    assert set(m["methods"]) == {"bacgcn", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_masked_global", "zeroshot_cdul"}
    classes = load_vocab({"synthetic": str(results.parent / "synthetic" / "synth.json")}.get(protocol, protocol)).classes
    bac = m["methods"]["bacgcn"]
    assert list(bac["ap_per_class"]) == classes and 0 <= bac["mAP"] <= 1
    assert {"CF1", "OF1"} <= set(bac) and set(m["timings_s"]) == {"captions", "features", "training", "evaluation"}
    # per-class AP CSV = metrics.json; mean over classes with positives = mAP
    csv = pd.read_csv(out / "per_class_ap.csv", index_col="class")
    assert list(csv.index) == classes
    np.testing.assert_allclose(csv["bacgcn"].to_numpy(float), [np.nan if a is None else a for a in bac["ap_per_class"].values()])
    np.testing.assert_allclose(np.nanmean(csv["bacgcn"].to_numpy(float)), bac["mAP"], rtol=1e-6)
    h = json.loads((out / "history.json").read_text())
    assert [(r["epoch"], r["reso"]) for r in h] == [(1, False), (2, True)]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["clip"]["model_config"]["embed_dim"] == 32 and cfg["out_dir"] == str(out)


def test_voc_protocol_options_reach_the_reader(runs):
    results, _ = runs
    from bacgcn.pipeline import ExperimentConfig
    cfg = ExperimentConfig.from_any(results / "voc2007" / "tiny" / "config.json")
    spec = cfg.data_spec()
    assert (cfg.protocol, spec.train_split, spec.test_split, spec.dataset_options) == ("voc2007", "trainval", "test", {"difficult": "ignore"})
    m = json.loads((results / "voc2007" / "tiny" / "metrics.json").read_text())
    assert m["protocol_exact"] is True and m["deviations"] == {}
    assert m["pseudo_label_quality"]["n_images"] == N   # the training split's labels score the pseudo labels


def test_ablation_grid(runs):
    results, _ = runs
    out = results / "voc2007" / "ablation"
    t = pd.read_csv(out / "ablation.csv", index_col="variant")
    assert list(t.index) == ["full", "no_reso"] and t.loc["full", "Δ vs full"] == 0
    for v in ["full", "no_reso"]:
        m = json.loads((out / v / "metrics.json").read_text())
        assert (m["experiment"], m["variant"]) == ("ablation", v)
        np.testing.assert_allclose(t.loc[v, "mAP"], round(100 * m["methods"]["bacgcn"]["mAP"], 2))
    assert [r["reso"] for r in json.loads((out / "no_reso" / "history.json").read_text())] == [False, False]
    assert (out / "ablation.ipynb").is_file() and (out / "figures" / "ablation.png").is_file()


def test_report_collates_runs_and_says_not_run(runs):
    results, done = runs
    assert done["report"] == results / "report.ipynb"
    readme = (results / "README.md").read_text()
    table = main_table(collect_results(results))
    ours = table.loc["BAC-GCN (this implementation)"]
    for col, proto in [("VOC2007", "voc2007"), ("COCO2014", "coco2014"), ("NUS-WIDE", "nuswide"), ("synthetic", "synthetic")]:
        m = json.loads((results / proto / "tiny" / "metrics.json").read_text())
        assert ours[col] == f"{100 * m['methods']['bacgcn']['mAP']:.1f}", col   # the run, not the ablation variants
    assert ours["VOC2012"] == NOT_RUN
    row = "| BAC-GCN (this implementation) | " + " | ".join(ours.tolist()) + " |"
    assert row in readme
    assert "| BAC-GCN (reported) | 93.0 | 93.2 | 72.2 | 48.8 | – |" in readme
    assert "| TagCLIP (reported) | 92.8 | – | 68.8 | 35.0 | – |" in readme
    assert (results / "figures" / "main_table.png").is_file() and (results / "figures" / "map_per_epoch.png").is_file()


def test_report_on_empty_results_says_not_run_everywhere(tmp_path):
    "Unit level (no kernel): no results at all -> every measured cell 'not run', reported cells as published."
    t = main_table(collect_results(tmp_path / "none"))
    measured = [i for i in t.index if "(reported)" not in i]
    assert (t.loc[measured] == NOT_RUN).all().all()
    for r in REPORTED:
        assert t.loc[f"{r.method} (reported)"].tolist() == [f"{r.values[c]:.1f}" if c in r.values else NOT_REPORTED for c in t.columns]


def test_failed_report_cell_not_filled_by_failed_or_ablation_runs(tmp_path):
    def put(rel, mAP, **kw):
        f = tmp_path / rel / "metrics.json"; f.parent.mkdir(parents=True)
        f.write_text(json.dumps({"methods": {"bacgcn": {"mAP": mAP}}, **kw}))
    put("coco2014/a", 0.5); (tmp_path / "coco2014" / "a" / "FAILED").write_text("x\nRuntimeError: died\n")
    put("nuswide/ablation/full", 0.4, experiment="ablation", variant="full")
    t = main_table(collect_results(tmp_path))
    assert t.loc["BAC-GCN (this implementation)", "COCO2014"] == NOT_RUN
    assert t.loc["BAC-GCN (this implementation)", "NUS-WIDE"] == NOT_RUN


def test_collect_results_reads_the_demo_schema(tmp_path):
    "`bacgcn demo` writes results/synth/metrics.json with `data` and `model` sections and extra methods."
    f = tmp_path / "synth" / "metrics.json"; f.parent.mkdir()
    f.write_text(json.dumps({"seed": 0, "data": {"n_train": 300, "n_test": 100}, "model": {"clip": {"model_name": "tinyclip-synth"}},
                             "methods": {"bacgcn": {"mAP": 0.6}, "bacgcn_no_reso": {"mAP": 0.55}, "zeroshot_clip_global": {"mAP": 0.3}}}))
    res = collect_results(tmp_path)
    assert set(res["protocol"]) == {"synthetic"} and set(res["n_train"]) == {300} and set(res["clip"]) == {"tinyclip-synth"}
    assert set(res["exact"]) == {False} and set(res["weights"]) == {"unknown"}
    t = main_table(res)   # not a protocol run (`bacgcn run run -p protocol synthetic` is): it stays out of the main table
    assert t.loc["BAC-GCN (this implementation)", "synthetic"] == NOT_RUN
    assert not any("no_reso" in i for i in t.index), "the demo's ablation methods stay out of the main table"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_parameters_tag_survives_nbdev_clean(tmp_path, name):
    src = experiment_path(name)
    assert src.parent == REPO / "experiments"
    copy = tmp_path / f"{name}.ipynb"
    shutil.copy(src, copy)
    subprocess.run(["nbdev-clean", "--fname", str(copy)], cwd=REPO, check=True, capture_output=True)
    nb = nbformat.read(copy, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert copy.read_text() == src.read_text(), f"experiments/{name}.ipynb is not clean: run nbdev-clean on it"
    # typed, commented defaults: every parameter line reads `name: type = value  # comment`
    lines = [l for l in tagged[0].source.splitlines() if l.strip() and not l.startswith("#")]
    assert lines and all(":" in l.split("=")[0] and "#" in l for l in lines), lines


def test_notebooks_import_only_from_bacgcn():
    allowed = {"json", "time", "typing", "dataclasses", "pathlib", "datetime", "matplotlib", "numpy", "pandas", "seaborn", "torch", "bacgcn"}
    for name in EXPERIMENTS:
        nb = nbformat.read(experiment_path(name), as_version=4)
        for c in nb.cells:
            for line in c.source.splitlines():
                if line.startswith(("import ", "from ")):
                    assert line.split()[1].split(".")[0] in allowed, f"{name}: {line}"


# ---------------------------------------------------------------------------------------------- run wrapper
def toy_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nout_dir = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from pathlib import Path\nassert not isinstance(x, int) or x > 0, 'x must be positive'\nPath(out_dir, 'x.txt').write_text(repr(x))")]
    nbformat.write(nb, path)
    return path


def test_run_marks_failure_and_clears_it(tmp_path, capsys):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    out = tmp_path / "out"
    assert cli_run(str(nb), [("x", "-2")], str(out)) == 1
    assert "AssertionError: x must be positive" in (out / "FAILED").read_text()
    assert (out / "toy.ipynb").is_file(), "the executed notebook is kept beside the outputs, failed or not"
    assert "failed" in capsys.readouterr().err
    assert collect_results(tmp_path)["status"].tolist() == ["failed"]
    assert cli_run(str(nb), [("x", "{a: 1}")], str(out)) == 0 and not (out / "FAILED").exists()
    assert (out / "x.txt").read_text() == "{'a': 1}"
    with pytest.raises(FileNotFoundError, match="not found"): cli_run("no_such_experiment", [], str(out))
    with pytest.raises(ValueError, match="parameter name"): cli_run(str(nb), [("bad name", "1")], str(out))


def test_run_notebook_default_out_dir_from_notebook_defaults(tmp_path, monkeypatch):
    "With no out_dir, the folder comes from the notebook's own defaults (here: results/<protocol>/<run name>)."
    from bacgcn.experiments import resolve_out_dir
    monkeypatch.chdir(tmp_path)
    assert resolve_out_dir("run", {"protocol": "coco2014", "seed": 3}) == Path("results/coco2014/ViT-B-16-openai-native-squash-maskclip-reso11-e16-s3")
    assert resolve_out_dir("run", {"protocol": "nuswide", "train": {"epochs": 4}, "reso": False}).name == "ViT-B-16-openai-native-squash-maskclip-noreso-e4-s0"
    assert resolve_out_dir("ablation", {"protocol": "voc2012-main"}) == Path("results/voc2012-main/ablation")
    assert resolve_out_dir("report", {}) == Path("results")


def test_parse_params():
    assert parse_params([("protocol", "coco2014"), ("epochs", "3"), ("train.lr", "5e-4"), ("train.model.kernel.top_k", "4"),
                         ("reso", "false"), ("image_size", "448"), ("clip_pretrained", "/w/ViT-B-16.pt"), ("variants", "[full, no_reso]")]) == {
        "protocol": "coco2014", "epochs": 3, "train": {"lr": 5e-4, "model": {"kernel": {"top_k": 4}}}, "reso": False, "image_size": 448,
        "clip_pretrained": "/w/ViT-B-16.pt", "variants": ["full", "no_reso"]}
    with pytest.raises(ValueError, match="not a mapping"): parse_params([("train", "3"), ("train.epochs", "1")])


# ---------------------------------------------------------------------------------------------- check-data
def whats(problems) -> list[tuple[str, str]]: return [(p.path.name, p.what) for p in problems]


@pytest.fixture
def voc(tmp_path):
    ann = {"000001": [("dog", 0)], "000002": [("cat", 0)], "000003": [("car", 0)], "000004": [("bus", 0)]}
    root = tmp_path / "data"
    write_voc(root, ann, {"trainval": ["000001", "000002"], "test": ["000003", "000004"]})
    caps = tmp_path / "caption"; caps.mkdir()
    (caps / "voc2007_captions.json").write_text(json.dumps({"000001.": ["a dog"], "000002.": ["a cat"]}))
    return root, caps


def test_check_data_complete(voc, capsys):
    root, caps = voc
    assert check_data("voc2007", root, captions=caps) == []
    assert cli_check_data("voc2007", str(root), str(caps)) == 0
    out = capsys.readouterr().out
    assert "split trainval: 2 images (the protocol expects 5,011)" in out and "no problems found" in out


def test_check_data_voc_missing_pieces(voc):
    root, caps = voc
    v = root / "VOCdevkit" / "VOC2007"
    (v / "JPEGImages" / "000002.jpg").unlink()
    (v / "Annotations" / "000004.xml").unlink()
    assert whats(check_data("voc2007", root)) == [("000002.jpg", "1 of 2 image files missing (000002.jpg)"),
                                                  ("000004.xml", "1 of 2 annotation files missing (000004.xml)")]
    (v / "ImageSets" / "Main" / "test.txt").unlink()
    assert ("test.txt", "split file 'test' missing") in whats(check_data("voc2007", root, split="test"))
    # the VOC2012 release protocol reads ImageSets/Segmentation, not Main
    assert [(p.path.relative_to(root).as_posix(), p.what) for p in check_data("voc2012", root / "VOCdevkit" / "VOC2007", split="train")] == [
        ("VOCdevkit/VOC2007/ImageSets/Segmentation", "folder missing"),
        ("VOCdevkit/VOC2007/ImageSets/Segmentation/train.txt", "split file 'train' missing")]
    shutil.rmtree(v / "JPEGImages")
    assert ("JPEGImages", "folder missing") in whats(check_data("voc2007", root))


def test_check_data_caption_problems(voc, capsys):
    root, caps = voc
    f = caps / "voc2007_captions.json"
    f.write_text(json.dumps({"000001.": ["a dog"], "000099.": ["a cow"]}))
    assert whats(check_data("voc2007", root, captions=caps)) == [
        (f.name, "1 of 2 images of split 'trainval' have no captions (000002)"),
        (f.name, "1 captions ids are not images of split 'trainval' (000099)")]
    f.write_text(json.dumps({"000001.": "a dog", "000002.": ["", " "]}))
    assert whats(check_data("voc2007", root, captions=f)) == [(f.name, "1 entries are not lists of strings (000001.)"),
                                                              (f.name, "1 entries have no caption text (000002.)")]
    f.write_text("{not json")
    assert "is not valid UTF-8 JSON" in check_data("voc2007", root, captions=f)[0].what
    f.write_text("[]")
    assert "holds a JSON list" in check_data("voc2007", root, captions=f)[0].what
    f.unlink()
    assert whats(check_data("voc2007", root, captions=caps)) == [(f.name, "captions file missing")]
    assert cli_check_data("voc2007", str(root), str(caps)) == 1 and str(f) in capsys.readouterr().out
    f.write_text(json.dumps({"000001.": ["a dog"], "000002.": ["a cat"]}))
    r = caps / "voc2007_re_captions.json"
    r.write_text(json.dumps({"000001.": ["dog"]}))
    assert whats(check_data("voc2007", root, captions=caps)) == [
        (r.name, "1 of 2 images of split 'trainval' have no re-captions (000002)"),
        (r.name, "the captions and re-captions files disagree: 1 ids only in the captions (000002), 0 only in the re-captions")]


def test_check_data_coco_missing_pieces(tmp_path):
    cats = list(enumerate(load_vocab("coco2014").classes, 1))
    write_coco(tmp_path, "train2014", [(1, "a.jpg"), (2, "b.jpg")], cats, [(1, 1, 0), (2, 3, 0)])
    (tmp_path / "train2014" / "b.jpg").unlink()
    assert whats(check_data("coco2014", tmp_path)) == [("b.jpg", "1 of 2 image files missing (b.jpg)"),
                                                       ("val2014", "folder missing"), ("instances_val2014.json", "annotation file missing")]
    # reader options given to a run reach the check too: images in another folder are found there
    (tmp_path / "images").mkdir(); (tmp_path / "train2014").rename(tmp_path / "images" / "train2014")
    assert whats(check_data("coco2014", tmp_path, split="train2014")) == [("train2014", "folder missing"),
                                                                          ("a.jpg", "2 of 2 image files missing (a.jpg, b.jpg)")]
    assert whats(check_data("coco2014", tmp_path, split="train2014", dataset_options={"image_dir": "images/train2014"})) == [
        ("b.jpg", "1 of 2 image files missing (b.jpg)")]


def test_check_data_nuswide_missing_pieces(tmp_path):
    concepts = load_vocab("nuswide").classes
    y = np.zeros((2, len(concepts)), np.int8); y[0, 0] = y[1, 5] = 1
    write_nuswide(tmp_path, "Train", concepts, ["a/1.jpg", "b/2.jpg"], y)
    (tmp_path / "Groundtruth" / "TrainTestLabels" / f"Labels_{concepts[3]}_Train.txt").unlink()
    (tmp_path / "Flickr" / "b" / "2.jpg").unlink()
    assert whats(check_data("nuswide", tmp_path, split="Train")) == [
        (f"Labels_{concepts[3]}_Train.txt", f"1 of 81 label files missing (Labels_{concepts[3]}_Train.txt)")]
    (tmp_path / "Groundtruth" / "TrainTestLabels" / f"Labels_{concepts[3]}_Train.txt").write_text("0\n0\n")
    assert whats(check_data("nuswide", tmp_path, split="Train")) == [("2.jpg", "1 of 2 image files missing (2.jpg)")]
    test = whats(check_data("nuswide", tmp_path, split="Test"))
    assert test[0] == ("TestImagelist.txt", "file missing") and test[1][1].startswith("81 of 81 label files missing (Labels_airport_Test.txt")
    (tmp_path / "Concepts81.txt").unlink()
    assert ("Concepts81.txt", "file missing") in whats(check_data("nuswide", tmp_path, split="Train"))


def test_check_data_synthetic_layout(tmp_path):
    (tmp_path / "images").mkdir()
    write_label_list(tmp_path / "train_cls.txt", {"train_00000": [0]})
    assert whats(check_data("synthetic", tmp_path)) == [("synth.json", "vocabulary file missing")]
    from bacgcn.synth import synth_vocab
    synth_vocab().save(tmp_path / "synth.json")
    assert whats(check_data("synthetic", tmp_path)) == [("train_00000.png", "1 of 1 image files missing (train_00000.png)"),
                                                     ("test_cls.txt", "missing")]


def test_protocols_cover_the_tables():
    assert {p.table for p in PROTOCOLS.values()} == {"VOC2007", "VOC2012", "COCO2014", "NUS-WIDE", "synthetic"}
    assert set(ABLATIONS) >= {"full", "no_reso", "no_backgrounds", "no_masking", "no_graph"}


def test_guide_has_a_command_per_table():
    guide = (REPO / "experiments" / "README.md").read_text()
    for name in ["voc2007", "voc2012", "voc2012-main", "coco2014", "nuswide", "synthetic"]:
        assert f"-p protocol {name} " in guide, name
    assert "estimate" in guide.lower()
