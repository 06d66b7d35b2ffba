"""A rehearsal of the paper's experiments as a new user runs them, on miniatures of VOC2007, VOC2012, COCO2014 and
NUS-WIDE in their real on-disk layouts (tests/native_fixtures.py: non-square JPEGs with objects planted at known
boxes, difficult objects, crowd annotations, an image without annotations, an EXIF-rotated photo, a listed image
that is missing, an unlabelled NUS-WIDE test image, captions in the released format) and a random-weight ViT-B-16
state-dict file at 224 px.

Every command goes through `bacgcn.cli.main` as it does from a terminal: `check-data`, `run run` (papermill, ReSO on),
`run ablation`, `run report`, `train`, `evaluate`, `predict`. The checks are on what must hold whatever the (random)
weights: the geometry of every crop and region, one experiment function for every entry point (the same numbers
through the command line and through papermill), the files a run writes, identities that keep runs and caches apart,
partial test sets marked as such, and errors that name the file in one line instead of a traceback. Random weights
make the mAP values meaningless; their equality across entry points is not. Slow: minutes of ViT-B/16 on a CPU."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from datasets_fixtures import NOTEBOOK_FILES, RUN_FILES, missing_run_files
from native_fixtures import edges_touched, make_miniature
from safetensors.torch import save_file

from bacgcn.cli import main
from bacgcn.clip import load_clip
from bacgcn.data import load_dataset
from bacgcn.experiments import collect_results, main_table
from bacgcn.features import read_image
from bacgcn.geometry import GEOMETRIES, box_iou, cells_to_unit, grid_cells
from bacgcn.protocols import load_split, resolve_data
from bacgcn.reso import crop_box_pixels, crop_region, expand_box

pytestmark = pytest.mark.slow

PROTOCOLS = ["voc2007", "voc2012", "coco2014", "nuswide"]
TRAIN = {
    "epochs": 2,
    "reso_start_epoch": 2,
    "batch_size": 4,
    "model": {"top_k": 4},
    "reso_config": {"epsilon": 0.6, "min_crop_px": 16},
}
FEATURES = {"num_workers": 0, "batch_size": 8}
STAGES = ["[1/5] data: ", "[2/5] captions: ", "[3/5] features: ", "[4/5] training: ", "[5/5] evaluation: "]


def cli(*argv) -> tuple[int, str, str]:
    "Run `bacgcn ARGV...` in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def random_vit_b16(path: Path, seed: int) -> Path:
    "A state-dict file of ViT-B/16's architecture with random weights (its activation cannot be told from it)."
    torch.manual_seed(seed)
    model = open_clip.CLIP(**open_clip.get_model_config("ViT-B-16"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    weights = random_vit_b16(root / "ViT-B-16-random.safetensors", 0)
    minis = {p: make_miniature(p, root / "data" / p) for p in PROTOCOLS}
    coco = minis["coco2014"]  # captions also of the image the reader drops (no annotations): accepted, noted
    caps = root / "coco-captions"
    shutil.copytree(coco.captions_dir, caps)
    for f in caps.glob("*.json"):
        d = json.loads(f.read_text())
        d[f"{coco.dropped[0]}."] = d[next(iter(d))]
        f.write_text(json.dumps(d))
    captions = {p: caps if p == "coco2014" else m.captions_dir for p, m in minis.items()}
    return SimpleNamespace(
        root=root, weights=weights, minis=minis, captions=captions, cache=root / "cache", results=root / "results"
    )


def run_params(w, protocol: str, config=None, **extra) -> list[str]:
    "`-p` parameters of run.ipynb (and, without `n_figure_images`, of ablation.ipynb); a value None drops one."
    c = config if config is not None else {"clip": {"quick_gelu": False}, "train": TRAIN, "features": FEATURES}
    p = dict(
        protocol=protocol,
        data_root=w.minis[protocol].data_root,
        captions=w.captions[protocol],
        clip_model="ViT-B-16",
        clip_pretrained=w.weights,
        config=json.dumps(c),
        cache_dir=w.cache,
        results_root=w.results,
        n_figure_images=2,
        allow_missing="true" if protocol == "nuswide" else None,
    )
    p.update(extra)
    return [x for k, v in p.items() if v is not None for x in ("-p", k, str(v))]


def train_args(w, protocol: str, out, *extra) -> list:
    "`bacgcn train` with the settings of `run_params(w, protocol)`."
    c = {"model_name": "ViT-B-16", "pretrained": str(w.weights), "quick_gelu": False}
    return [
        "train",
        "--protocol",
        protocol,
        "--data-root",
        w.minis[protocol].data_root,
        "--captions",
        w.captions[protocol],
        "--out",
        out,
        "-s",
        f"clip={json.dumps(c)}",
        "-s",
        f"train={json.dumps(TRAIN)}",
        "-s",
        f"features={json.dumps(FEATURES)}",
        "-s",
        f"cache_dir={w.cache}",
        *extra,
    ]


def run_folder(stdout: str) -> Path:
    return Path(re.search(r" -> (.+)", stdout).group(1).strip())


def stored(folder: Path) -> dict:
    return {f: (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def runs(world):
    "`bacgcn run run` on every miniature (ReSO from epoch 2; COCO with test-time tiles): {protocol: (rc, err, folder)}."
    out = {}
    for p in PROTOCOLS:
        rc, stdout, err = cli("run", "run", *run_params(world, p, **({"tta": "true"} if p == "coco2014" else {})))
        out[p] = (rc, err, run_folder(stdout) if " -> " in stdout else None)
    return out


# ------------------------------------------------------------------------------------------------ data checks
def test_check_data_on_every_layout(world):
    for p in PROTOCOLS:
        m = world.minis[p]
        rc, out, _ = cli("check-data", p, "--data-root", m.data_root, "--captions", world.captions[p])
        n_train, n_test = len(m.splits[m.train_split]), len(m.splits[m.test_split]) - len(m.unlabelled)
        assert f"{n_train} images" in out and f"{n_test} images" in out, out
        if p == "nuswide":  # a listed test image not on disk: the run would stop (or, allowed, be partial)
            assert rc == 1 and "1 of 4 image files missing" in out, out
        else:
            assert rc == 0 and "no problems" in out, out
        if p == "coco2014":  # captions of an image without annotations: a note, not a problem
            assert "no problems" in out and "notes:" in out and world.minis[p].dropped[0] in out, out
    rc, out, _ = cli("check-data", "nuswide-all", "--data-root", world.minis["nuswide"].data_root)
    assert "split Test: 5 images" in out, out  # the full list, the unlabelled image included


def test_a_state_dict_of_unknown_activation_is_refused_in_one_line(world):
    "ViT-B-16 weights are published with QuickGELU and with GELU; a state-dict file says neither: exit 2, one line."
    m = world.minis["voc2007"]
    rc, _, err = cli(
        "train",
        "--protocol",
        "voc2007",
        "--data-root",
        m.data_root,
        "--captions",
        world.captions["voc2007"],
        "--out",
        world.root / "never",
        "-s",
        "clip_model=ViT-B-16",
        "-s",
        f"clip_pretrained={world.weights}",
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "-s clip.quick_gelu=true" in err, err
    assert not (world.root / "never").exists()
    rc, _, err = cli("run", "run", *run_params(world, "voc2007", config={}, results_root=world.root / "never"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "-p config.clip.quick_gelu true" in err, err
    assert not (world.root / "never").exists()  # refused before a kernel started


# ------------------------------------------------------------------------------------------------ papermill runs
def test_runs_write_their_folders(world, runs):
    conventions = {}
    for p in PROTOCOLS:
        rc, err, out = runs[p]
        assert rc == 0, err[-3000:]
        mini = world.minis[p]
        assert not missing_run_files(out, RUN_FILES + NOTEBOOK_FILES + ("figures/test_class_counts.png",)), p
        m = json.loads((out / "metrics.json").read_text())
        assert (m["protocol"], m["protocol_exact"], m["experiment"]) == (p, True, "run")
        assert m["n_train"] == len(mini.splits[mini.train_split])
        listed = [i for i in mini.splits[mini.test_split] if i not in mini.unlabelled]
        assert m["n_test"] == len(listed) - len(mini.missing)
        assert m["partial"] == ({"n_missing": 1, "missing": mini.missing} if mini.missing else None)
        assert m["clip"]["weights_sha256"] == sha256(world.weights) and m["clip"]["weights_source"] == str(
            world.weights
        )
        assert (m["clip"]["activation"], m["clip"]["image_size"], m["masking"]) == ("gelu", 224, "pixel/black")
        assert m["devices"]["clip"] == m["devices"]["train"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
        assert [(h["epoch"], h["reso"]) for h in m["history"]["bacgcn"]] == [(1, False), (2, True)]
        assert out.parent.name == p and f"file-{sha256(world.weights)[:8]}" in out.name
        assert ("bacgcn_tiles" in m["methods"]) == ("zeroshot_clip_tiles" in m["methods"]) == (p == "coco2014")
        if p.startswith("voc"):
            conventions[p] = {k: round(100 * v, 2) for k, v in m["methods"]["bacgcn"]["mAP_conventions"].items()}
            assert conventions[p]["ignore"] == round(100 * m["methods"]["bacgcn"]["mAP"], 2)
    print(f"\nBAC-GCN mAP (%) under the three VOC conventions (random ViT-B-16 weights): {conventions}")


def test_runs_print_each_stage_once(runs):
    for p in PROTOCOLS:
        _, err, _ = runs[p]
        lines = err.splitlines()
        for line in STAGES + ["epoch 1/2: loss", "epoch 2/2: loss", "ReSO at epoch 2: ", "done: "]:
            assert sum(l.startswith(f"  | {line}") for l in lines) == 1 + line.startswith("["), (p, line, err[-3000:])
        assert any(l.startswith("  | features crops-") for l in lines) and "features features" not in err
        assert ("PARTIAL: 1 test images could not be read" in err) == (p == "nuswide")


def test_nuswide_scores_its_labelled_test_images(world, runs):
    "The default protocol scores the labelled test images (as the anchors); nuswide-all lists every one."
    nus = world.minis["nuswide"]
    labelled = load_split(resolve_data("nuswide", nus.data_root), "Test").image_ids
    everything = load_split(resolve_data("nuswide-all", nus.data_root), "Test").image_ids
    assert labelled == [i for i in nus.splits["Test"] if i not in nus.unlabelled] and everything == nus.splits["Test"]
    rc, _, err = cli(*train_args(world, "nuswide", world.root / "nus-refused"))  # without allow_missing: refused
    assert rc == 2 and nus.missing[0] in err and "allow_missing" in err and len(err.strip().splitlines()) == 1, err


def test_voc_difficult_and_coco_crowd_follow_the_protocol(world):
    "VOC: a class present only as a difficult object is ignored (the API's default too); COCO: the crowd's is positive."
    voc = world.minis["voc2007"]
    test = load_split(resolve_data("voc2007", voc.data_root), "test")
    np.testing.assert_array_equal(test.labels, voc.labels("test", difficult="ignore"))
    np.testing.assert_array_equal(load_dataset("voc2007", voc.data_root, "test").labels, test.labels)
    assert (test.labels == -1).any()
    coco = world.minis["coco2014"]
    train = load_split(resolve_data("coco2014", coco.data_root), "train2014")
    assert train.image_ids == coco.splits["train2014"] and not set(coco.dropped) & set(train.image_ids)
    np.testing.assert_array_equal(train.labels, coco.labels("train2014"))


# ------------------------------------------------------------------------------------------------ one experiment
def test_command_line_and_papermill_give_the_same_numbers(world, runs):
    "`bacgcn train` with the notebook's settings gives exactly the papermill run's numbers; evaluate and predict agree."
    nb = json.loads((runs["voc2007"][2] / "metrics.json").read_text())
    m = world.minis["voc2007"]
    out = world.root / "cli" / "voc2007"
    rc, stdout, err = cli(*train_args(world, "voc2007", out))
    assert rc == 0, err[-3000:]
    cl = json.loads((out / "metrics.json").read_text())
    assert cl["methods"] == nb["methods"] and cl["n_test"] == nb["n_test"] and cl["protocol_exact"]
    assert "epoch 2/2: loss" in stdout  # the command line shows its progress too

    rc, stdout, err = cli(
        "evaluate",
        "--checkpoint",
        out / "model.pt",
        "--protocol",
        "voc2007",
        "--data-root",
        m.data_root,
        "--json",
        "-s",
        f"cache_dir={world.cache}",
    )
    assert rc == 0, err
    ev = json.loads(stdout)
    assert ev["mAP"] == pytest.approx(nb["methods"]["bacgcn"]["mAP"], abs=1e-12)
    assert ev["mAP_conventions"] == pytest.approx(nb["methods"]["bacgcn"]["mAP_conventions"], abs=1e-12)

    csv = world.root / "cli" / "predictions.csv"
    images = [m.paths[i] for i in m.splits["test"]]
    rc, _, err = cli("predict", "--checkpoint", out / "model.pt", *images, "--out", csv, "--threshold", 0)
    assert rc == 0, err
    df = pd.read_csv(csv)
    assert len(df) == len(images) and df.filter(like="region:").notna().any().any()
    for _, row in df.iterrows():  # every region lies inside its photo
        W, H = m.sizes[Path(row["image"]).stem]
        for col in [c for c in df.columns if c.startswith("region:") and isinstance(row[c], str)]:
            x0, y0, x1, y1 = map(int, row[col].split())
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, (row["image"], col)
    rc, _, err = cli("predict", "--checkpoint", out / "model.pt", images[0], "--out", csv.with_name("t.csv"), "--tiles")
    assert rc == 0, err
    tiles = pd.read_csv(csv.with_name("t.csv")).filter(like="score:").iloc[0].to_numpy(float)
    assert not np.allclose(tiles, df.filter(like="score:").iloc[0].to_numpy(float))  # the tiles change the scores


def test_train_into_the_notebook_runs_folder(world, runs):
    "The same settings continue the finished notebook run (its record kept); other settings are refused untouched."
    out = runs["voc2012"][2]
    before, kept, caches = json.loads((out / "metrics.json").read_text()), stored(out), sorted(world.cache.iterdir())
    rc, _, err = cli(*train_args(world, "voc2012", out), "-s", "train.lr=0.5")
    assert rc == 2 and "holds another run" in err and "train.lr" in err and "Traceback" not in err, err
    assert "bacgcn train --overwrite" in err and "bacgcn run -p overwrite true" in err
    assert stored(out) == kept and sorted(world.cache.iterdir()) == caches  # not one byte written, nothing computed
    rc, _, err = cli(*train_args(world, "voc2012", out))
    assert rc == 0, err[-3000:]
    after = json.loads((out / "metrics.json").read_text())
    assert after["methods"] == before["methods"] and after["history"] == before["history"]
    assert after["timings_s"] == before["timings_s"] and len(after["reruns"]) == len(before["reruns"]) + 1


def test_a_rerun_through_bacgcn_run_prints_each_line_once(world, runs):
    "A second `bacgcn run` of the same command in a new process whose root logger prints: every line once."
    code = "import logging, sys; logging.basicConfig(level=logging.INFO); from bacgcn.cli import main; sys.exit(main())"
    r = subprocess.run(
        [sys.executable, "-c", code, "run", "run", *run_params(world, "voc2007")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stderr.splitlines()
    for line in STAGES + ["ReSO at epoch 2: ", "done: "]:
        assert sum(line in l for l in lines) == 1 + line.startswith("["), (line, r.stderr[-3000:])
    assert "IPKernelApp" not in r.stderr and "TCP" not in r.stderr
    m = json.loads((runs["voc2007"][2] / "metrics.json").read_text())
    assert len(m["reruns"]) >= 1 and set(m["timings_s"]) == set(m["reruns"][-1])


def test_report_takes_only_complete_protocol_runs_and_names_the_weights(world, runs):
    m = world.minis["voc2007"]
    off = world.results / "voc2007" / "deviating"  # another reading of difficult objects: not the protocol
    rc, _, err = cli(
        *train_args(world, "voc2007", off),
        "-s",
        "train.epochs=1",
        "-s",
        "train.reso=false",
        "--quiet",
        "-s",
        'data.options={"difficult": "positive"}',
    )
    assert rc == 0, err
    assert json.loads((off / "metrics.json").read_text())["deviations"]
    os.utime(off / "metrics.json")  # the newest VOC2007 result: it must still not fill the cell
    rc, _, err = cli("run", "report", "-p", "results_root", world.results, "--quiet")
    assert rc == 0, err
    readme = (world.results / "README.md").read_text()
    table = main_table(collect_results(world.results)).loc["BAC-GCN (this implementation)"]
    nb = json.loads((runs["voc2007"][2] / "metrics.json").read_text())
    assert table["VOC2007"] == f"{100 * nb['methods']['bacgcn']['mAP']:.1f}"
    assert table["NUS-WIDE"] == "not run"  # its only run is partial
    assert sha256(world.weights)[:12] in readme and "voc2007/deviating" in readme  # listed, not in the table
    head = next(l for l in readme.splitlines() if l.startswith("| path |"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    rows = {
        l.split("|")[1].strip(): dict(zip(cols, (c.strip() for c in l.strip("|").split("|"))))
        for l in readme.splitlines()
        if l.startswith(("| voc2007/", "| nuswide/"))
    }
    dev = rows["voc2007/deviating"]
    assert dev["exact"] == "False" and (dev["n_train"], dev["n_test"]) == (
        str(len(m.splits["trainval"])),
        str(len(m.splits["test"])),
    )
    voc = rows[str(runs["voc2007"][2].relative_to(world.results))]
    assert voc["mAP_negative"] == f"{round(100 * nb['methods']['bacgcn']['mAP_conventions']['negative'], 2)}"
    nus = rows[str(runs["nuswide"][2].relative_to(world.results))]
    assert (nus["partial"], nus["n_test"]) == ("True", "3")  # 4 labelled test images, one not on disk


def test_ablation_loads_clip_once(world):
    rc, _, err = cli(
        "run",
        "ablation",
        *run_params(world, "voc2007", variants='["full", "no_reso"]', presets='["paper"]', n_figure_images=None),
    )
    assert rc == 0, err[-3000:]
    out = world.results / "voc2007" / "ablation"
    table = pd.read_csv(out / "ablation.csv", index_col=["preset", "variant"])
    assert list(table.index) == [("paper", "full"), ("paper", "no_reso")]
    for p, v in table.index:
        mv = json.loads((out / p / v / "metrics.json").read_text())
        assert (mv["experiment"], mv["variant"], mv["protocol"]) == ("ablation", v, "voc2007")
    assert err.count("[3/5] features: ClipBackbone(") == 1  # one CLIP load, one prompt encoding for the grid


# ------------------------------------------------------------------------------------------------ identities
def test_other_weights_never_reuse_or_touch_a_run(world, runs):
    _, _, out = runs["voc2012"]
    other = random_vit_b16(world.root / "ViT-B-16-other.safetensors", 1)
    before = stored(out)
    rc, _, err = cli("run", "run", *run_params(world, "voc2012", clip_pretrained=other), "--out", out)
    assert rc == 2 and "holds another run" in err and "clip.weights_sha256" in err and "Traceback" not in err, err
    assert stored(out) == before and not (out / "FAILED").exists()  # not one byte written
    from bacgcn.experiments import experiment_config

    c = {"clip": {"quick_gelu": False}, "train": TRAIN}
    own = experiment_config(
        "voc2012", clip_model="ViT-B-16", clip_pretrained=str(other), config=c, results_root=str(world.results)
    )
    assert Path(own.out_dir).parent == out.parent and Path(own.out_dir).name == out.name.replace(
        f"file-{sha256(world.weights)[:8]}", f"file-{sha256(other)[:8]}"
    )  # its own folder by default


def test_two_data_roots_with_the_same_ids_have_their_own_caches(world, runs):
    from bacgcn.features import cache_path

    m = world.minis["voc2007"]
    copy = world.root / "voc-copy"
    shutil.copytree(m.data_root, copy)
    bb = load_clip("ViT-B-16", str(world.weights), quick_gelu=False, device="cpu")
    a = load_split(resolve_data("voc2007", m.data_root), "test")
    b = load_split(resolve_data("voc2007", copy), "test")
    assert a.image_ids == b.image_ids
    assert cache_path(world.cache, "voc2007-test", bb, a) != cache_path(world.cache, "voc2007-test", bb, b)
    assert cache_path(world.cache, "voc2007-test", bb, a).is_dir()  # the run made exactly this folder


def test_bad_input_is_one_line(world, tmp_path, monkeypatch):
    rc, _, err = cli("run", "run", *run_params(world, "voc2007", epochs=3))
    assert rc == 2 and "has no parameter epochs" in err and "its parameters: protocol, data_root" in err, err
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "folder.pt").mkdir()

    class Payload:
        def __reduce__(self):
            return (print, ("must never run",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    torch.save({"epoch": 3}, tmp_path / "foreign.pt")
    img = world.minis["voc2007"].paths["000001"]
    for name, what in [
        ("empty.pt", "is empty"),
        ("folder.pt", "is a folder"),
        ("evil.pt", "would run code"),
        ("foreign.pt", "not a BAC-GCN model checkpoint"),
        ("missing.pt", "does not exist"),
    ]:
        rc, _, err = cli("predict", "--checkpoint", tmp_path / name, img, "--out", tmp_path / "p.csv")
        assert rc == 2 and name in err and what in err and len(err.strip().splitlines()) == 1, err
    dialled = []

    def connect(self, addr):
        dialled.append(addr)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    rc, _, err = cli(
        "extract",
        "--protocol",
        "voc2007",
        "--data-root",
        world.minis["voc2007"].data_root,
        "-s",
        "clip_model=hf-hub:nobody/no-such-clip",
        "-s",
        f"cache_dir={tmp_path / 'c'}",
    )
    assert rc == 2 and "not in the local Hugging Face cache" in err and dialled == [], (err, dialled)


# ------------------------------------------------------------------------------------------------ geometry
def test_every_planted_object_is_seen_and_cropped_whole(world):
    """Every planted object is in view in the whole-image modes (crop mode hides some of those at the sides), and the
    ReSO crop of its region (`bacgcn.reso.crop_region` on the photo as the feature cache reads it) holds all of it."""
    stats = {g: {"objects": 0, "in_view": 0, "covered": 0, "iou": []} for g in GEOMETRIES}
    for g in GEOMETRIES:
        bb = load_clip("ViT-B-16", str(world.weights), quick_gelu=False, geometry=g, device="cpu")
        for p, mini in world.minis.items():
            for iid, objs in mini.objects.items():
                if iid not in mini.paths or not mini.paths[iid].exists():
                    continue
                W, H = mini.sizes[iid]
                f = bb.frame(W, H)
                photo = read_image(mini.paths[iid])
                assert photo.size == (W, H), iid  # EXIF applied
                for o in objs:
                    s = stats[g]
                    s["objects"] += 1
                    v, e = f.visible(), 1e-6
                    if not (
                        v[0] - e <= o.box[0] and v[1] - e <= o.box[1] and o.box[2] <= v[2] + e and o.box[3] <= v[3] + e
                    ):
                        assert g == "crop", (p, iid, o)
                        continue
                    s["in_view"] += 1
                    cells = grid_cells(o.box, f, bb.grid_size)
                    s["iou"].append(box_iou(f.grid_to_image(cells_to_unit(cells, bb.grid_size)), o.box))
                    box = expand_box(cells_to_unit(cells, bb.grid_size), 0.25)  # ResoConfig.margin
                    px = crop_box_pixels(f.grid_to_image(box), W, H, 16)
                    whole = px[0] <= o.box[0] and px[1] <= o.box[1] and px[2] >= o.box[2] and px[3] >= o.box[3]
                    crop = np.asarray(crop_region(photo, box, f, min_crop_px=16), dtype=float)
                    share = (np.abs(crop - np.array(o.colour)).sum(-1) < 90).mean()
                    expected = o.width * o.height / ((px[2] - px[0]) * (px[3] - px[1]))
                    expected *= np.pi / 4 if o.shape == "ellipse" else 1.0
                    s["covered"] += whole and share > 0.5 * expected
    for g in ("squash", "letterbox"):
        assert stats[g]["in_view"] == stats[g]["objects"] > 60
    assert stats["crop"]["in_view"] < stats["crop"]["objects"]  # the centre crop hides edge objects of these photos
    for g in GEOMETRIES:
        assert stats[g]["covered"] == stats[g]["in_view"], (g, stats[g])
        assert np.median(stats[g]["iou"]) > 0.3, (g, np.median(stats[g]["iou"]))
    edge = sum(
        bool(edges_touched(o, world.minis[p].sizes[i]))
        for p in PROTOCOLS
        for i, os_ in world.minis[p].objects.items()
        for o in os_
    )
    assert edge > 10  # the miniatures put objects at the edges, where the geometries differ


def test_448_px_end_to_end(world, runs):
    "ViT-B-16 at 448 px (a 28 x 28 grid): a run, its evaluation and predicted regions inside the photos."
    m = world.minis["coco2014"]
    out = world.root / "cli448"
    rc, _, err = cli(*train_args(world, "coco2014", out), "-s", "clip.image_size=448", "--quiet")
    assert rc == 0, err[-3000:]
    met = json.loads((out / "metrics.json").read_text())
    assert met["clip"]["image_size"] == 448 and met["protocol_exact"] and met["n_test"] == len(m.splits["val2014"])
    rc, _, err = cli(
        "predict",
        "--checkpoint",
        out / "model.pt",
        *[m.paths[i] for i in m.splits["val2014"]],
        "--out",
        out / "p.csv",
        "--threshold",
        0,
    )
    assert rc == 0, err
    df = pd.read_csv(out / "p.csv")
    assert df.filter(like="region:").notna().any().any()
    for _, row in df.iterrows():
        W, H = m.sizes[Path(row["image"]).stem]
        for col in [c for c in df.columns if c.startswith("region:") and isinstance(row[c], str)]:
            x0, y0, x1, y1 = map(int, row[col].split())
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
