"""End to end on a tiny random CLIP and a tiny on-the-fly dataset: extract -> train (ReSO switched on in the
last epoch) -> evaluate -> predict, through the command line; resume equals an uninterrupted run; the cache
refuses another model."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bacgcn.cli import main
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.features import extract_features
from bacgcn.pipeline import prepare, train_and_evaluate
from bacgcn.train import TrainConfig
from bacgcn.vocab import Vocab

CLASSES, BACKGROUNDS = ["boat", "car", "bird"], ["water"]
COLOURS = {"boat": (200, 30, 30), "car": (30, 200, 30), "bird": (30, 30, 200)}


def _image(rng, labels, size=40):
    a = np.full((size, size, 3), 128, np.uint8)
    a[size // 2:] = (40, 90, 160)                                       # "water" in the lower half
    for c in labels:
        x, y = rng.integers(0, size - 10, 2)
        a[y:y + 10, x:x + 10] = COLOURS[c]
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "36 train + 12 test images in several formats/modes (one corrupt), label lists, captions, vocab, tiny CLIP config."
    d = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    (d / "images").mkdir()
    modes = ["RGB", "L", "CMYK", "P", "RGBA"]
    caps, recaps, lines = {}, {}, {"train": [], "test": []}
    for split, n in [("train", 36), ("test", 12)]:
        for i in range(n):
            k = f"{split}{i:03d}"
            labels = [c for c in CLASSES if rng.random() < 0.45] or [CLASSES[i % 3]]
            img = _image(rng, labels).convert(modes[i % len(modes)])
            ext = ".png" if img.mode in ("P", "RGBA", "L") else ".jpg"
            img.save(d / "images" / f"{k}{ext}")
            if ext == ".png":   # the label-list reader looks for .jpg: keep one extension by linking
                (d / "images" / f"{k}.jpg").write_bytes((d / "images" / f"{k}{ext}").read_bytes())
            lines[split].append(f"{k} " + " ".join(str(CLASSES.index(c)) for c in labels))
            caps[f"{k}."] = [f"a {' and a '.join(labels)} on the water"] * 3 + [f"a photo of a {labels[0]}"] * 3
            recaps[f"{k}."] = [f"there is a {labels[-1]}"] * 6
    (d / "images" / "train005.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")           # corrupt file
    for split in lines: (d / f"{split}_cls.txt").write_text("\n".join(lines[split]) + "\n")
    (d / "captions.json").write_text(json.dumps(caps)); (d / "recaptions.json").write_text(json.dumps(recaps))
    Vocab("toy", CLASSES, BACKGROUNDS, {"water": ["water", "lake"]}).save(d / "vocab.json")
    (d / "clip.json").write_text(json.dumps(tiny_clip_config()))
    torch.manual_seed(0)                 # fixed random weights in a file: every stage loads the same CLIP
    from safetensors.torch import save_file
    save_file(load_clip(model_config=str(d / "clip.json")).model.state_dict(), str(d / "clip.safetensors"))
    return d


def _common(d):
    return ["--dataset", "labels", "--data-root", str(d), "--train-split", "train_cls.txt", "--test-split", "test_cls.txt",
            "--image-root", str(d / "images"), "--vocab", str(d / "vocab.json"), "--model-config", str(d / "clip.json"),
            "--pretrained", str(d / "clip.safetensors"),
            "--cache-dir", str(d / "cache"), "--quiet", "-s", "features.num_workers=0"]


def test_extract_train_evaluate_predict_from_the_command_line(world, tmp_path, capsys):
    d = world
    assert main(["extract", *_common(d)]) == 0
    out = tmp_path / "run"
    rc = main(["train", *_common(d), "--captions", str(d / "captions.json"), "--recaptions", str(d / "recaptions.json"),
               "--out", str(out), "--epochs", "2", "-s", "train.reso_start_epoch=2", "-s", "train.batch_size=8",
               "-s", "train.model.kernel.top_k=2", "-s", 'train.reso_config={"epsilon": 0.6, "min_crop_px": 8}'])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_train"] == 35 and m["n_test"] == 12                     # the corrupt image is left out
    assert {"bacgcn", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_masked_global", "zeroshot_cdul"} <= set(m["methods"])
    hist = json.loads((out / "history.json").read_text())
    assert [h["reso"] for h in hist] == [False, True] and hist[1]["n_samples"] > hist[0]["n_samples"]
    assert "train005" in (out / "alignment.txt").read_text()

    assert m["protocol"] is None and m["protocol_exact"] is False and m["devices"]["clip"] == "cpu"

    capsys.readouterr()
    data = ["--dataset", "labels", "--data-root", str(d), "--image-root", str(d / "images"), "--vocab", str(d / "vocab.json")]
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), *data, "--split", "test_cls.txt",
                 "--cache-dir", str(d / "cache-eval"), "--json", "--quiet"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["mAP"] == pytest.approx(m["methods"]["bacgcn"]["mAP"], abs=1e-6)

    preds = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(out / "model.pt"), str(d / "images" / "test000.jpg"),
                 str(d / "images" / "train005.jpg"), "--out", str(preds), "--quiet", "--threshold", "0"]) == 0
    import pandas as pd
    df = pd.read_csv(preds)
    assert list(df["image"].map(lambda p: Path(p).name)) == ["test000.jpg", "train005.jpg"]
    assert {"score:boat", "score:water", "labels", "error", "region:boat"} <= set(df.columns)
    assert df["error"].isna().tolist() == [True, False]
    x0, y0, x1, y1 = map(int, df.loc[0, "region:boat"].split())
    assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 40   # pixels of the 40 x 40 photo

    # a whole split through the same data flags
    assert main(["predict", "--checkpoint", str(out / "model.pt"), *data, "--split", "test_cls.txt",
                 "--out", str(tmp_path / "split.csv"), "--quiet"]) == 0
    assert len(pd.read_csv(tmp_path / "split.csv")) == 12


def test_resume_equals_uninterrupted_and_cache_refuses_other_model(world, tmp_path):
    d = world
    torch.manual_seed(0)
    bb = load_clip(model_config=str(d / "clip.json"))
    ids = [f"train{i:03d}" for i in range(36) if i != 5]
    items = [(k, d / "images" / f"{k}.jpg") for k in ids]
    rng = np.random.default_rng(1)
    hard = (rng.random((len(ids), 4)) < 0.5).astype(np.uint8)
    from types import SimpleNamespace
    pl = SimpleNamespace(image_ids=ids, categories=CLASSES + BACKGROUNDS, soft=hard * 0.7, hard=hard)
    vocab = Vocab("toy", CLASSES, BACKGROUNDS)
    prep = prepare(vocab=vocab, backbone=bb, train_items=items, pseudo=pl, cache_dir=tmp_path / "cache", test_items=items[:10],
                   test_labels=hard[:10, :3], feature_config={"num_workers": 0}, progress=False)
    cfg = TrainConfig(epochs=3, reso_start_epoch=2, batch_size=8, model={"kernel": {"top_k": 2}},
                      reso_config={"epsilon": 0.6, "min_crop_px": 8})
    full = train_and_evaluate(prep, cfg, tmp_path / "full", progress=False)
    train_and_evaluate(prep, cfg, tmp_path / "resumed", progress=False, stop_after=2)
    res = train_and_evaluate(prep, cfg, tmp_path / "resumed", progress=False, resume=True)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in full.history], rtol=1e-6)
    np.testing.assert_allclose(res.test_scores, full.test_scores, atol=1e-6)
    assert res.metrics["mAP"] == pytest.approx(full.metrics["mAP"], abs=1e-9)

    torch.manual_seed(1)
    other = load_clip(model_config=str(d / "clip.json"))                 # same architecture, other weights
    with pytest.raises(ValueError, match="weights_sha256"):
        extract_features(items, other, next((tmp_path / "cache").glob("train-*")), {"num_workers": 0}, progress=False)


def test_same_seed_same_metrics_through_the_console_script(world, tmp_path):
    "Two `python -m bacgcn train` processes with the same seed write identical metrics; another seed does not."
    def train(out, seed):
        r = subprocess.run([sys.executable, "-m", "bacgcn", "train", *_common(world), "--captions", str(world / "captions.json"),
                            "--out", str(out), "--epochs", "2", "--seed", str(seed), "-s", "train.reso=false",
                            "-s", "train.batch_size=8", "-s", "train.model.kernel.top_k=2"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return json.loads((out / "metrics.json").read_text())["methods"]["bacgcn"]
    a, b, c = train(tmp_path / "a", 0), train(tmp_path / "b", 0), train(tmp_path / "c", 1)
    assert a == b
    assert a["ap_per_class"] != c["ap_per_class"]
    r = subprocess.run([sys.executable, "-m", "bacgcn", "evaluate", "--checkpoint", str(tmp_path / "none.pt"),
                        "--protocol", "voc2007", "--data-root", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "none.pt does not exist" in r.stderr and "Traceback" not in r.stderr


def test_fixed_reso_regions_and_target_override(world, tmp_path):
    "ReSO with given regions crops exactly those (their category becomes a positive crop target); targets replace the pseudo labels."
    d = world
    torch.manual_seed(0)
    bb = load_clip(model_config=str(d / "clip.json"))
    ids = [f"train{i:03d}" for i in range(36) if i != 5]
    items = [(k, d / "images" / f"{k}.jpg") for k in ids]
    hard = np.zeros((len(ids), 4), np.uint8); hard[:, 0] = 1                # every image: "boat" only
    from types import SimpleNamespace
    from bacgcn.reso import SmallRegion
    pl = SimpleNamespace(image_ids=ids, categories=CLASSES + BACKGROUNDS, soft=hard * 1.0, hard=hard)
    prep = prepare(vocab=Vocab("toy", CLASSES, BACKGROUNDS), backbone=bb, train_items=items, pseudo=pl, cache_dir=tmp_path / "cache",
                   test_items=items[:10], test_labels=hard[:10, :3], feature_config={"num_workers": 0}, progress=False)
    cfg = TrainConfig(epochs=2, reso_start_epoch=2, batch_size=8, model={"kernel": {"top_k": 2}}, reso_config={"min_crop_px": 8})
    regions = [SmallRegion(3, 2, (0.1, 0.1, 0.4, 0.4), 0.05), SmallRegion(7, 0, (0.5, 0.5, 0.9, 0.9), 0.05)]
    res = train_and_evaluate(prep, cfg, tmp_path / "fixed", progress=False, reso_regions=regions)
    assert res.history[1]["n_samples"] == len(ids) + 2
    stored = json.loads((tmp_path / "fixed" / "reso" / "regions.json").read_text())["regions"]
    assert [(i, o) for i, o, _, _ in stored] == [(3, 2), (7, 0)]
    from bacgcn.features import FeatureCache
    assert sorted(FeatureCache.open(tmp_path / "fixed" / "reso" / "features").image_ids) == [f"{ids[3]}#2", f"{ids[7]}#0"]

    with pytest.raises(ValueError, match="targets are"):
        train_and_evaluate(prep, cfg, tmp_path / "bad1", progress=False, targets=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        train_and_evaluate(prep, cfg, tmp_path / "bad2", progress=False, targets=np.full((len(ids), 4), 2.0))
    with pytest.raises(ValueError, match="reso_regions given but"):
        train_and_evaluate(prep, TrainConfig(epochs=1, reso=False), tmp_path / "bad3", progress=False, reso_regions=regions)
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))      # refused before anything is written
    with pytest.raises(ValueError, match="outside"):
        train_and_evaluate(prep, cfg, tmp_path / "bad4", progress=False, reso_regions=[SmallRegion(99, 0, (0.1, 0.1, 0.4, 0.4), 0.05)])

    # targets naming class 2 ("bird") everywhere, which the pseudo labels never name: it is scored present, not absent
    y = np.zeros((len(ids), 4), np.float32); y[:, 0] = 1; y[:, 2] = 1
    one = TrainConfig(epochs=2, reso=False, batch_size=8, model={"kernel": {"top_k": 2}})
    base = train_and_evaluate(prep, one, tmp_path / "pseudo", progress=False)
    over = train_and_evaluate(prep, one, tmp_path / "override", progress=False, targets=y)
    assert over.test_scores[:, 2].min() > 0.5 > base.test_scores[:, 2].max()
