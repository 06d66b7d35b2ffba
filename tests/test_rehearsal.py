"""A rehearsal of the paper's experiments as a new user runs them, on miniatures of VOC2007, VOC2012, COCO2014 and
NUS-WIDE in their real on-disk layouts (tests/native_fixtures.py: non-square JPEGs with objects planted at known
boxes, difficult objects, crowd annotations, an image without annotations, an EXIF-rotated photo, a listed image
that is missing, captions in the released format) and a random-weight ViT-B-16 state-dict file at 224 px.

Every command goes through `bacgcn.cli.main` as it does from a terminal: `check-data`, `run run` (papermill, ReSO on),
`run ablation` (two variants), `run report`, `train`, `evaluate`, `predict`. The checks are on what must hold whatever
the (random) weights: the geometry of every crop and region, one protocol for every entry point (the same numbers
through the command line and through papermill), the files the guide promises, identities that keep runs and caches
apart, and errors that name the file instead of a traceback. Random weights make the mAP values meaningless; their
equality across entry points is not.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from bacgcn.cli import main
from bacgcn.clip import load_clip
from bacgcn.geometry import GEOMETRIES, box_iou, cells_to_unit, grid_cells
from bacgcn.pipeline import save_region_crop
from bacgcn.reso import crop_box_pixels, expand_box
from native_fixtures import edges_touched, make_miniature

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ["voc2007", "voc2012", "coco2014", "nuswide"]
TRAIN = {"batch_size": 4, "model": {"kernel": {"top_k": 4}}, "reso_config": {"epsilon": 0.6, "min_crop_px": 16}}
FEATURES = {"num_workers": 0, "batch_size": 8}
TIMES: dict[str, float] = {}   # wall seconds per command, printed at the end of the module (pytest -s)


def cli(*argv) -> tuple[int, str, str]:
    "Run `bacgcn ARGV...` in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    key = " ".join(str(a) for a in argv[:2])
    TIMES[key] = TIMES.get(key, 0.0) + time.perf_counter() - t0
    return rc, out.getvalue(), err.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    torch.manual_seed(0)
    model = open_clip.CLIP(**open_clip.get_model_config("ViT-B-16"))   # random weights, ViT-B/16's architecture
    weights = root / "ViT-B-16-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    minis = {p: make_miniature(p, root / "data" / p) for p in PROTOCOLS}
    return SimpleNamespace(root=root, weights=weights, minis=minis, cache=root / "cache", results=root / "results")


def run_params(w, protocol: str, **extra) -> list[str]:
    "`-p` parameters of run.ipynb (and, without `n_figure_images`, of ablation.ipynb); a value None drops one."
    m = w.minis[protocol]
    p = dict(protocol=protocol, data_root=m.data_root, captions_dir=m.captions_dir, clip_pretrained=w.weights,
             epochs=2, reso_start_epoch=2, cache_dir=w.cache, results_root=w.results, n_figure_images=2,
             features=json.dumps(FEATURES), train=json.dumps(TRAIN), **{"clip.quick_gelu": "false"})
    p.update(extra)
    return [x for k, v in p.items() if v is not None for x in ("-p", k, str(v))]


@pytest.fixture(scope="module")
def runs(world):
    "`bacgcn run run` on every miniature (ReSO from epoch 2): {protocol: (exit status, stderr, run folder)}."
    out = {}
    for p in PROTOCOLS:   # COCO also with the test-time extension
        rc, stdout, err = cli("run", "run", *run_params(world, p, **({"tta": "true"} if p == "coco2014" else {})))
        folder = Path(stdout.split(" -> ")[1].splitlines()[0]) if " -> " in stdout else None
        out[p] = (rc, err, folder)
    return out


# ------------------------------------------------------------------------------------------------ data checks
def test_check_data_on_every_layout(world):
    for p in PROTOCOLS:
        m = world.minis[p]
        rc, out, _ = cli("check-data", p, "--data-root", m.data_root, "--captions", m.captions_dir)
        n_train, n_test = len(m.splits[m.train_split]), len(m.splits[m.test_split])
        assert f"{n_train:,} images" in out and f"{n_test:,} images" in out, out
        if m.missing:   # NUS-WIDE: a listed image that is not on disk is reported (and left out of the run)
            assert rc == 1 and "1 of 4 image files missing" in out, out
        else:
            assert rc == 0 and "no problems found" in out, out


# ------------------------------------------------------------------------------------------------ papermill runs
def test_runs_write_what_the_guide_promises(world, runs):
    guide = (REPO / "experiments" / "README.md").read_text()
    promised = ["run.ipynb", "config.json", "metrics.json", "history.json", "per_class_ap.csv", "model.pt", "checkpoint.pt",
                "run.json", "pseudo_labels", "reso", "figures"]
    for name in promised:
        assert f"`{name}" in guide, f"the guide does not list {name}"
    for p in PROTOCOLS:
        rc, err, out = runs[p]
        assert rc == 0, err[-3000:]
        m, mini = json.loads((out / "metrics.json").read_text()), world.minis[p]
        for name in promised:
            assert (out / name).exists(), f"{p}: {name} missing"
        for fig in ["map_per_epoch_and_per_class_ap.png", "similarity_maps.png", "masking.png", "test_class_counts.png"]:
            assert (out / "figures" / fig).stat().st_size > 0, (p, fig)
        assert (m["protocol"], m["protocol_exact"], m["experiment"]) == (p, True, "run")
        assert m["n_train"] == len(mini.splits[mini.train_split])
        assert m["n_test"] == len(mini.splits[mini.test_split]) - len(mini.missing) and m["n_test_failed"] == len(mini.missing)
        assert m["clip"]["weights_sha256"] == sha256(world.weights) and m["clip"]["weights_source"] == str(world.weights)
        assert (m["clip"]["geometry"], m["clip"]["activation"], m["clip"]["image_size"]) == ("squash", "gelu", 224)
        assert m["devices"]["clip"] == m["devices"]["train"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
        assert [(h["epoch"], h["reso"]) for h in json.loads((out / "history.json").read_text())] == [(1, False), (2, True)]
        assert out.parent.name == p and f"file-{sha256(world.weights)[:8]}" in out.name
        assert ("bacgcn_tta" in m["methods"]) == (p == "coco2014")
    tta = json.loads((runs["coco2014"][2] / "metrics.json").read_text())["tta"]
    assert tta["clip_passes_per_test_image"] == 3 + tta["grid"] ** 2


def test_runs_show_their_progress(runs):
    for p in PROTOCOLS:
        _, err, _ = runs[p]
        for line in ["[1/5] data", "[3/5] CLIP features", "features ", "epoch 1/2", "epoch 2/2", "ReSO at epoch 2"]:
            assert f"  | {line}" in err, (p, line, err[-2000:])


def test_voc_difficult_and_coco_crowd_follow_the_protocol(world, runs):
    "VOC: a class present only as a difficult object is ignored in the AP; COCO: the crowd's class is positive."
    from bacgcn.protocols import load_split, resolve_data
    voc = world.minis["voc2007"]
    test = load_split(resolve_data("voc2007", voc.data_root), "test")
    np.testing.assert_array_equal(test.labels, voc.labels("test", difficult="ignore"))
    assert (test.labels == -1).any()
    coco = world.minis["coco2014"]
    train = load_split(resolve_data("coco2014", coco.data_root), "train2014")
    assert train.image_ids == coco.splits["train2014"] and not set(coco.dropped) & set(train.image_ids)
    np.testing.assert_array_equal(train.labels, coco.labels("train2014"))


# ------------------------------------------------------------------------------------------------ one protocol
def test_command_line_and_papermill_give_the_same_numbers(world, runs):
    "`bacgcn train` with the notebook's settings gives exactly the papermill run's mAP; `evaluate` and `predict` agree."
    _, _, nb_out = runs["voc2007"]
    nb = json.loads((nb_out / "metrics.json").read_text())
    m = world.minis["voc2007"]
    out = world.root / "cli" / "voc2007"
    caps, recaps = m.caption_paths()
    rc, stdout, err = cli("train", "--protocol", "voc2007", "--data-root", m.data_root, "--captions", caps, "--recaptions", recaps,
                          "--clip-model", "ViT-B-16", "--pretrained", world.weights, "-s", "clip.quick_gelu=false",
                          "--epochs", 2, "-s", "train.reso_start_epoch=2", "-s", f"train={json.dumps(TRAIN)}",
                          "-s", f"features={json.dumps(FEATURES)}", "--cache-dir", world.cache, "--out", out)
    assert rc == 0, err[-3000:]
    cl = json.loads((out / "metrics.json").read_text())
    assert cl["methods"]["bacgcn"]["mAP"] == nb["methods"]["bacgcn"]["mAP"]
    assert cl["methods"]["bacgcn"]["ap_per_class"] == nb["methods"]["bacgcn"]["ap_per_class"]
    assert cl["protocol_exact"] and cl["n_test"] == nb["n_test"]
    assert "epoch 2/2" in stdout   # the command line shows its progress too

    rc, stdout, err = cli("evaluate", "--checkpoint", out / "model.pt", "--protocol", "voc2007", "--data-root", m.data_root,
                          "--cache-dir", world.cache, "--json", "--quiet")
    assert rc == 0, err
    assert json.loads(stdout)["mAP"] == pytest.approx(nb["methods"]["bacgcn"]["mAP"], abs=1e-12)

    csv = world.root / "cli" / "predictions.csv"
    rc, _, err = cli("predict", "--checkpoint", out / "model.pt", "--protocol", "voc2007", "--data-root", m.data_root,
                     "--out", csv, "--threshold", 0, "--quiet")
    assert rc == 0, err
    df = pd.read_csv(csv)
    assert len(df) == len(m.splits["test"])
    rc, _, err = cli("predict", "--checkpoint", out / "model.pt", m.paths["000001"], "--out", csv.with_name("tta.csv"),
                     "--tta", "--quiet")
    assert rc == 0, err
    s_tta = pd.read_csv(csv.with_name("tta.csv")).filter(like="score:").iloc[0]
    s = df[df["image"].str.endswith("000001.jpg")].filter(like="score:").iloc[0]
    assert not np.allclose(s_tta.to_numpy(float), s.to_numpy(float))   # the tiles change the scores
    for _, row in df.iterrows():   # every region lies inside its photo
        W, H = m.sizes[Path(row["image"]).stem]
        for col in [c for c in df.columns if c.startswith("region:")]:
            x0, y0, x1, y1 = map(int, row[col].split())
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, (row["image"], col)


def test_report_takes_only_protocol_runs_and_names_the_weights(world, runs):
    m = world.minis["voc2007"]
    caps, recaps = m.caption_paths()
    off = world.results / "voc2007" / "deviating"   # same data, another reading of difficult objects: not the protocol
    rc, _, err = cli("train", "--protocol", "voc2007", "--data-root", m.data_root, "--captions", caps, "--recaptions", recaps,
                     "--clip-model", "ViT-B-16", "--pretrained", world.weights, "-s", "clip.quick_gelu=false", "--epochs", 1,
                     "-s", "train.reso=false", "-s", 'dataset_options={"difficult": "positive"}',
                     "-s", f"features={json.dumps(FEATURES)}", "--cache-dir", world.cache, "--out", off, "--quiet")
    assert rc == 0, err
    assert json.loads((off / "metrics.json").read_text())["deviations"]
    os.utime(off / "metrics.json")   # the newest VOC2007 result: it must still not fill the cell
    rc, _, err = cli("run", "report", "-p", "results_root", world.results, "--quiet")
    assert rc == 0, err
    readme = (world.results / "README.md").read_text()
    nb = json.loads((runs["voc2007"][2] / "metrics.json").read_text())
    assert f"| BAC-GCN (this implementation) | {100 * nb['methods']['bacgcn']['mAP']:.1f} |" in readme
    assert sha256(world.weights)[:12] in readme and "deviating" in readme   # listed among all runs, not in the table
    row = next(l for l in readme.splitlines() if "voc2007/deviating" in l)
    assert "| False |" in row
    assert ".0 | 4 |" not in readme and f"| {len(m.splits['trainval'])} | {len(m.splits['test'])} |" in readme   # integer counts


def test_ablation_loads_clip_once(world):
    rc, stdout, err = cli("run", "ablation", *run_params(world, "voc2007", variants='["full", "no_reso"]', n_figure_images=None))
    assert rc == 0, err[-3000:]
    out = world.results / "voc2007" / "ablation"
    table = pd.read_csv(out / "ablation.csv", index_col="variant")
    assert list(table.index) == ["full", "no_reso"]
    for v in table.index:
        mv = json.loads((out / v / "metrics.json").read_text())
        assert (mv["experiment"], mv["variant"], mv["protocol"]) == ("ablation", v, "voc2007")
    assert err.count("ClipBackbone(ViT-B-16") == 1   # one CLIP load, one prompt encoding for the grid
    assert (out / "ablation.ipynb").is_file() and (out / "figures" / "ablation.png").is_file()


# ------------------------------------------------------------------------------------------------ identities
def test_other_weights_never_reuse_or_touch_a_run(world, runs):
    _, _, out = runs["voc2012"]
    torch.manual_seed(1)
    other = world.root / "ViT-B-16-other.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.CLIP(**open_clip.get_model_config("ViT-B-16")).state_dict().items()}, str(other))
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    rc, _, err = cli("run", "run", *run_params(world, "voc2012", clip_pretrained=other), "--out", out)
    assert rc == 2 and "holds another run" in err and "clip.weights_sha256" in err and "Traceback" not in err, err
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == before   # not one byte written
    assert not (out / "FAILED").exists()
    # named by their hash, the other weights' run has a folder of its own
    from bacgcn.experiments import run_name
    assert run_name(clip_pretrained=str(other)) != run_name(clip_pretrained=str(world.weights))


def test_two_data_roots_with_the_same_ids_have_their_own_caches(world, runs):
    import shutil
    from bacgcn.protocols import load_split, resolve_data
    from bacgcn.features import cache_path
    m = world.minis["voc2007"]
    copy = world.root / "voc-copy"
    shutil.copytree(m.data_root, copy)
    bb = load_clip("ViT-B-16", str(world.weights), quick_gelu=False, device="cpu")
    a = load_split(resolve_data("voc2007", m.data_root), "test").items()
    b = load_split(resolve_data("voc2007", copy), "test").items()
    assert [i for i, _ in a] == [i for i, _ in b]
    assert cache_path(world.cache, "voc2007-test", bb, a) != cache_path(world.cache, "voc2007-test", bb, b)
    assert cache_path(world.cache, "voc2007-test", bb, a).is_dir()   # the run made exactly this folder


def test_bad_input_is_one_line(world, runs, tmp_path, monkeypatch):
    rc, _, err = cli("run", "run", *run_params(world, "voc2007", epoch=3))
    assert rc == 2 and "has no parameter epoch" in err and "its parameters are: protocol, data_root" in err
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "folder.pt").mkdir()

    class Payload:
        def __reduce__(self):
            return (print, ("must never run",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    torch.save({"epoch": 3}, tmp_path / "foreign.pt")
    img = world.minis["voc2007"].paths["000001"]
    for name, what in [("empty.pt", "is empty"), ("folder.pt", "is a folder"), ("evil.pt", "would run code"),
                       ("foreign.pt", "not a BAC-GCN model checkpoint"), ("missing.pt", "does not exist")]:
        rc, _, err = cli("predict", "--checkpoint", tmp_path / name, img, "--out", tmp_path / "p.csv")
        assert rc == 2 and name in err and what in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    dialled = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: dialled.append(addr) or (_ for _ in ()).throw(OSError("no")))
    rc, _, err = cli("extract", "--protocol", "voc2007", "--data-root", world.minis["voc2007"].data_root,
                     "--clip-model", "hf-hub:nobody/no-such-clip", "--cache-dir", tmp_path / "c")
    assert rc == 2 and "not in the Hugging Face cache" in err and dialled == [], (err, dialled)


# ------------------------------------------------------------------------------------------------ geometry
def test_every_planted_object_is_seen_and_cropped_whole(world):
    """Every planted object is in view in the whole-image modes (crop mode hides some of those at the sides), and the ReSO
    crop of its region, made through the pipeline's own crop path from the photo on disk, contains all of it."""
    stats = {g: {"objects": 0, "in_view": 0, "covered": 0, "iou": []} for g in GEOMETRIES}
    for g in GEOMETRIES:
        bb = load_clip("ViT-B-16", str(world.weights), quick_gelu=False, geometry=g, device="cpu")
        for p, mini in world.minis.items():
            for iid, objs in mini.objects.items():
                if iid not in mini.paths or not mini.paths[iid].exists():
                    continue
                W, H = mini.sizes[iid]
                f = bb.frame(W, H)
                for k, o in enumerate(objs):
                    s = stats[g]
                    s["objects"] += 1
                    v, e = f.visible(), 1e-6
                    if not (v[0] - e <= o.box[0] and v[1] - e <= o.box[1] and o.box[2] <= v[2] + e and o.box[3] <= v[3] + e):
                        assert g == "crop", (p, iid, o)
                        continue
                    s["in_view"] += 1
                    cells = grid_cells(o.box, f, bb.grid_size)
                    s["iou"].append(box_iou(f.grid_to_image(cells_to_unit(cells, bb.grid_size)), o.box))
                    box = expand_box(cells_to_unit(cells, bb.grid_size), 0.25)
                    crop_px = crop_box_pixels(f.grid_to_image(box), W, H, 16)
                    path = world.root / "crops" / g / f"{p}-{iid.replace('/', '_')}-{k}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    assert save_region_crop(path, mini.paths[iid], box, bb, 16)
                    whole = crop_px[0] <= o.box[0] and crop_px[1] <= o.box[1] and crop_px[2] >= o.box[2] and crop_px[3] >= o.box[3]
                    crop = np.asarray(Image.open(path), dtype=float)
                    share = (np.abs(crop - np.array(o.colour)).sum(-1) < 90).mean()
                    expected = o.width * o.height / ((crop_px[2] - crop_px[0]) * (crop_px[3] - crop_px[1]))
                    expected *= np.pi / 4 if o.shape == "ellipse" else 1.0
                    s["covered"] += whole and share > 0.5 * expected
    for g in ("squash", "letterbox"):
        assert stats[g]["in_view"] == stats[g]["objects"] > 60
    assert stats["crop"]["in_view"] < stats["crop"]["objects"]   # the centre crop hides edge objects of these photos
    for g in GEOMETRIES:
        assert stats[g]["covered"] == stats[g]["in_view"], (g, stats[g])
        assert np.median(stats[g]["iou"]) > 0.3, (g, np.median(stats[g]["iou"]))
    edge = sum(bool(edges_touched(o, world.minis[p].sizes[i])) for p in PROTOCOLS for i, os_ in world.minis[p].objects.items() for o in os_)
    print(f"\nplanted objects {stats['squash']['objects']} ({edge} touching an edge); in view: "
          + ", ".join(f"{g} {s['in_view']}" for g, s in stats.items())
          + "; median IoU of the mapped-back region: " + ", ".join(f"{g} {np.median(s['iou']):.2f}" for g, s in stats.items()))


@pytest.mark.slow
def test_448_px_end_to_end(world, runs):
    "ViT-B-16 at 448 px (a 28 x 28 grid): a run, its evaluation and predicted regions inside the photos."
    m = world.minis["coco2014"]
    caps, recaps = m.caption_paths()
    out = world.root / "cli448"
    rc, _, err = cli("train", "--protocol", "coco2014", "--data-root", m.data_root, "--captions", caps, "--recaptions", recaps,
                     "--clip-model", "ViT-B-16", "--pretrained", world.weights, "-s", "clip.quick_gelu=false",
                     "--image-size", 448, "--epochs", 2, "-s", "train.reso_start_epoch=2", "-s", f"train={json.dumps(TRAIN)}",
                     "-s", f"features={json.dumps(FEATURES)}", "--cache-dir", world.cache, "--out", out, "--quiet")
    assert rc == 0, err[-3000:]
    met = json.loads((out / "metrics.json").read_text())
    assert met["clip"]["image_size"] == 448 and met["protocol_exact"]
    rc, _, err = cli("predict", "--checkpoint", out / "model.pt", *[m.paths[i] for i in m.splits["val2014"]],
                     "--out", out / "p.csv", "--threshold", 0, "--quiet")
    assert rc == 0, err
    df = pd.read_csv(out / "p.csv")
    for _, row in df.iterrows():
        W, H = m.sizes[Path(row["image"]).stem]
        for col in [c for c in df.columns if c.startswith("region:")]:
            x0, y0, x1, y1 = map(int, row[col].split())
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H


def test_print_times():
    "Wall time of each command of this rehearsal (shown with pytest -s)."
    print("\nrehearsal wall time per command (s): " + json.dumps({k: round(v, 1) for k, v in TIMES.items()}))
