"""Tests of bacgcn.features: a tiny on-the-fly image set with every kind of bad file, resume after a
crash, refusal of mismatched caches, the atomic manifest, and the read-only cache."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import bacgcn.features as feats
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.features import (IDENTITY_FIELDS, FeatureCache, FeatureConfig, encode_images_from_paths, extract_features, plan_batches,
                             read_image, read_manifest, to_rgb, write_json_atomic)

CFG = dict(batch_size=3, chunk_size=4, num_workers=0)


def _backbone(seed=0, **kw):
    torch.manual_seed(seed)
    return load_clip(model_config=tiny_clip_config(), **kw)


@pytest.fixture(scope="module")
def bb():
    return _backbone()


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    """(items, reference RGB images by id, expected failure reason prefixes by id)."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    rgb = lambda h, w: (rng.random((h, w, 3)) * 255).astype(np.uint8)
    refs, fails, items = {}, {}, []

    def add(name, img, save=None, ref=None):
        p = d / name
        (save or (lambda: img.save(p)))()
        items.append((name.split(".")[0], p))
        refs[name.split(".")[0]] = ref if ref is not None else Image.open(p).convert("RGB")

    add("rgb.jpg", Image.fromarray(rgb(40, 52)))
    add("rgb_wide.jpg", Image.fromarray(rgb(30, 70)))
    add("gray.png", Image.fromarray(rgb(36, 36)[..., 0]))
    add("cmyk.jpg", Image.fromarray(rgb(40, 40)).convert("CMYK"))
    add("palette.png", Image.fromarray(rgb(33, 41)).convert("P"))
    # RGBA with a fully transparent half (alpha 0 or 255 only, so the white composite is exact)
    a = rgb(40, 40)
    alpha = np.full((40, 40), 255, np.uint8)
    alpha[:, :20] = 0
    comp = a.copy()
    comp[:, :20] = 255
    add("rgba.png", Image.fromarray(np.dstack([a, alpha]), "RGBA"), ref=Image.fromarray(comp))
    la = rgb(32, 32)[..., 0]
    add("la.png", Image.fromarray(np.dstack([la, np.where(np.arange(32) < 16, 0, 255).astype(np.uint8)[None].repeat(32, 0)]), "LA"),
        ref=Image.fromarray(np.where(np.arange(32) < 16, 255, la).astype(np.uint8)).convert("RGB"))
    g16 = (rng.random((34, 34)) * 65535).astype(np.uint16)
    add("gray16.png", Image.fromarray(g16), ref=Image.fromarray(np.rint(g16 / 257).astype(np.uint8)).convert("RGB"))
    # bad files
    Image.fromarray(rgb(64, 64)).save(d / "full.jpg", quality=95)
    (d / "truncated.jpg").write_bytes((d / "full.jpg").read_bytes()[:900])
    items.append(("truncated", d / "truncated.jpg")); fails["truncated"] = "truncated"
    (d / "empty.jpg").write_bytes(b"")
    items.append(("empty", d / "empty.jpg")); fails["empty"] = "empty"
    (d / "text.jpg").write_text("this is not a JPEG\n")
    items.append(("text", d / "text.jpg")); fails["text"] = "unreadable"
    items.append(("missing", d / "missing.jpg")); fails["missing"] = "missing"
    items.append(("nopath", None)); fails["nopath"] = "missing"
    add("rgb_last.jpg", Image.fromarray(rgb(50, 45)))
    return items, refs, fails


def _direct(bb, img):
    return bb.encode_images(bb.preprocess(img)[None])


def test_image_set_extraction(bb, image_set, tmp_path):
    items, refs, fails = image_set
    assert len(items) >= 14
    fc = extract_features(items, bb, tmp_path / "cache", CFG, progress=False)
    assert fc.complete and len(fc) == len(items)
    assert set(fc.failed) == set(fails)
    for k, prefix in fails.items():
        assert fc.failed[k].startswith(prefix), (k, fc.failed[k])
    assert "missing.jpg" in fc.failed["missing"] and "truncated.jpg" in fc.failed["truncated"]
    valid = fc.valid
    assert [i for i, ok in zip(fc.image_ids, valid) if not ok] == [i for i, _ in items if i in fails]
    for name in ("patches", "global", "g_h", "g_hc", "attn"):
        arr = fc[name]
        assert arr.dtype == np.float16 and not arr.flags.writeable
        assert not arr[~valid].any(), name  # failed rows are left empty, not filled with a blank image's features
    for image_id, img in refs.items():
        ref = _direct(bb, img)
        i = fc.index_of(image_id)
        for name in ("patches", "global", "g_h", "g_hc", "attn"):
            np.testing.assert_allclose(fc[name][i].astype(np.float32), ref[name][0].numpy(), atol=1e-3, rtol=0, err_msg=f"{image_id} {name}")
    m = read_manifest(tmp_path / "cache")
    assert m["image_ids"] == [i for i, _ in items] and m["chunks_done"] == [0, 1, 2, 3]
    assert {k: m[k] for k in IDENTITY_FIELDS} == bb.identity
    assert m["version"] == 2 and m["n_patches"] == 16 and m["embed_dim"] == 32


class Flaky:
    def __init__(self, bb, fail_at=None):
        self.bb, self.calls, self.fail_at = bb, 0, fail_at

    def __getattr__(self, k):
        return getattr(self.bb, k)

    def encode_images(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.bb.encode_images(x)


def test_resume_computes_only_unfinished_chunks(bb, image_set, tmp_path):
    items, _, fails = image_set
    clean = extract_features(items, bb, tmp_path / "clean", CFG, progress=False)
    flaky = Flaky(bb, fail_at=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_features(items, flaky, tmp_path / "resumed", CFG, progress=False)
    m = read_manifest(tmp_path / "resumed")
    ids = [i for i, _ in items]
    # batches that reach the backbone: those with at least one readable image
    calls = [(c, rows) for c, rows in plan_batches(len(items), 4, 3) if any(ids[r] not in fails for r in rows)]
    done = sorted({c for c, _ in calls[:3]} - {calls[3][0]})  # chunks whose batches all finished before call 4
    assert m["chunks_done"] == done and not m["complete"]
    assert all(f in [ids[r] for c in done for r in range(4 * c, min(4 * c + 4, len(ids)))] for f in m["failed"])
    partial = FeatureCache.open(tmp_path / "resumed")
    assert partial.valid.sum() < clean.valid.sum()
    again = Flaky(bb)
    resumed = extract_features(items, again, tmp_path / "resumed", dict(CFG, num_workers=2), progress=False)
    assert again.calls == sum(1 for c, _ in calls if c not in done)
    assert resumed.complete and resumed.failed == clean.failed
    np.testing.assert_array_equal(resumed.valid, clean.valid)
    for name in ("patches", "global", "g_h", "g_hc", "attn"):
        np.testing.assert_array_equal(resumed[name], clean[name])
    # a finished cache is returned without any backbone call
    idle = Flaky(bb)
    extract_features(items, idle, tmp_path / "resumed", CFG, progress=False)
    assert idle.calls == 0


def test_mismatched_cache_refused(bb, image_set, tmp_path):
    items = image_set[0][:5]
    extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    cases = [(_backbone(seed=1), "weights_sha256"), (_backbone(rho=0.25), "rho"), (_backbone(dense="vanilla"), "dense"),
             (_backbone(image_size=64), "image_size"), (_backbone(model_name="other"), "model_name"),
             (_backbone(geometry="letterbox"), "geometry"), (_backbone(quick_gelu=True), "activation")]
    for other, field in cases:
        with pytest.raises(ValueError, match=field) as e:
            extract_features(items, other, tmp_path / "c", CFG, progress=False)
        assert "overwrite=True" in str(e.value)
    with pytest.raises(ValueError, match="another image list"):
        extract_features(items[:4], bb, tmp_path / "c", CFG, progress=False)
    with pytest.raises(ValueError, match="alpha_background"):
        extract_features(items, bb, tmp_path / "c", dict(CFG, alpha_background="black"), progress=False)
    fc = extract_features(items, _backbone(rho=0.25), tmp_path / "c", CFG, progress=False, overwrite=True)
    assert fc.identity["rho"] == 0.25 and fc.complete


def test_atomic_manifest(tmp_path, monkeypatch):
    p = write_json_atomic(tmp_path / "manifest.json", {"chunks_done": [0]})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"chunks_done": [0, 1], "oops": object()})  # fails half-way through serialising
    assert json.loads(p.read_text()) == {"chunks_done": [0]}

    def crash(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(feats.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_json_atomic(p, {"chunks_done": [0, 1]})
    assert json.loads(p.read_text()) == {"chunks_done": [0]}
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]  # no temporary file left behind


def test_cache_open_and_index(bb, image_set, tmp_path):
    items = image_set[0][:3]
    fc = extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    fc = FeatureCache.open(tmp_path / "c")
    assert fc.image_ids == ["rgb", "rgb_wide", "gray"] and fc.index_of("gray") == 2
    with pytest.raises(KeyError, match="not in the feature cache"):
        fc.index_of("zebra")
    with pytest.raises(ValueError):
        fc.patches[0, 0, 0] = 1  # read-only
    assert isinstance(fc.patches, np.memmap) and fc.global_.shape == (3, 32)
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        FeatureCache.open(tmp_path)
    os.remove(tmp_path / "c" / "g_h.npy")
    with pytest.raises(FileNotFoundError, match="g_h.npy is missing"):
        FeatureCache.open(tmp_path / "c")


def test_bad_item_lists(bb, tmp_path):
    with pytest.raises(ValueError, match="duplicate image ids"):
        extract_features([("a", None), ("a", None)], bb, tmp_path / "c", CFG, progress=False)
    with pytest.raises(ValueError, match="no images"):
        extract_features([], bb, tmp_path / "c", CFG, progress=False)
    with pytest.raises(ValueError, match="unknown FeatureConfig fields"):
        FeatureConfig.from_any({"batch": 3})


def test_dataset_like_items_and_in_memory_pass(bb, image_set, tmp_path):
    items, refs, _ = image_set
    ds = SimpleNamespace(image_ids=[i for i, _ in items[:4]], image_paths=[p for _, p in items[:4]])
    fc = extract_features(ds, bb, tmp_path / "c", CFG, progress=False)
    got = encode_images_from_paths(bb, [items[0][1], refs["gray"]], batch_size=1)
    assert got["patches"].shape == (2, 16, 32) and got["keep"].dtype == torch.bool
    np.testing.assert_allclose(fc.patches[0].astype(np.float32), got["patches"][0].numpy(), atol=1e-3)
    np.testing.assert_allclose(fc.global_[2].astype(np.float32), got["global"][1].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="truncated"):
        encode_images_from_paths(bb, [p for i, p in items if i == "truncated"])


def test_alpha_background_choices(bb):
    img = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(img, (0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)
    mean_rgb = feats.background_rgb("mean", bb.mean)
    x = bb.preprocess(to_rgb(img, mean_rgb))
    assert x.abs().max() < 0.01  # CLIP's mean colour normalises to ~0
    with pytest.raises(ValueError, match="alpha_background"):
        FeatureConfig(alpha_background="pink")


def test_read_image_reasons(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(feats.ImageReadError, match="not a file"):
        read_image(tmp_path / "d.jpg")
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "ok.png")
    im = read_image(tmp_path / "ok.png")
    assert im.mode == "RGB" and im.size == (3, 2) and im.getpixel((0, 0)) == (1, 2, 3)
