"""Tests of bacgcn.features, the one cache: a tiny image set with every kind of bad file, resume after a crash,
refusal of caches made from other inputs (backbone, images, content edited in place), row I/O against np.load,
crops and tiles, device JPEG decoding on the CPU, and two torchrun processes (gloo) writing one cache."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bacgcn.features as feats
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.features import (ARRAYS, FEATURE_KEYS, FeatureCache, FeatureConfig, Features, NpyFile, as_items,
                             dist_env, extract_features, plan_batches, read_image, read_manifest, to_rgb)
from bacgcn.config import as_config

CFG = dict(batch_size=3, chunk_size=4, num_workers=0)


def _backbone(seed=0, **kw):
    torch.manual_seed(seed)
    return load_clip(model_config=tiny_clip_config(), device="cpu", **kw)


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


def _progress(cache_dir):
    return feats._progress(Path(cache_dir))


def test_image_set_extraction(bb, image_set, tmp_path):
    items, refs, fails = image_set
    assert len(items) >= 14
    fc = extract_features(items, bb, tmp_path / "cache", CFG, progress=False)
    assert fc.complete and fc.n == len(items)
    assert set(fc.failed) == set(fails)
    for k, prefix in fails.items():
        assert fc.failed[k].startswith(prefix), (k, fc.failed[k])
    assert "missing.jpg" in fc.failed["missing"] and "truncated.jpg" in fc.failed["truncated"]
    valid = fc.valid
    assert [i for i, ok in zip(fc.image_ids, valid) if not ok] == [i for i, *_ in items if i in fails]
    for name in ARRAYS:
        arr = fc.read(name, range(fc.n))
        assert arr.dtype == (np.int32 if name == "sizes" else np.float16)
        assert not arr[~valid].any(), name  # failed rows are left empty, not filled with a blank image's features
    for image_id, img in refs.items():
        ref, i = _direct(bb, img), fc.index_of(image_id)
        for name in ("patches", "global", "g_h", "g_hc", "attn"):
            np.testing.assert_allclose(fc.read(name, [i])[0].astype(np.float32), ref[name][0].numpy(), atol=1e-3, rtol=0,
                                       err_msg=f"{image_id} {name}")
        assert tuple(fc.read("sizes", [i])[0]) == img.size
    m = read_manifest(tmp_path / "cache")
    assert m["image_ids"] == [i for i, *_ in items] and fc.done == {0, 1, 2, 3}
    assert m["identity"] == bb.identity and m["version"] == 3 and (m["n_patches"], m["embed_dim"]) == (16, 32)


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
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_features(items, Flaky(bb, fail_at=4), tmp_path / "resumed", CFG, progress=False)
    done, failed = _progress(tmp_path / "resumed")
    ids = [i for i, *_ in items]
    # batches that reach the backbone: those with at least one readable image
    calls = [(c, rows) for c, rows in plan_batches(len(items), 4, 3, range(4)) if any(ids[r] not in fails for r in rows)]
    want = sorted({c for c, _ in calls[:3]} - {calls[3][0]})  # chunks whose batches all finished before call 4
    assert sorted(done) == want and not FeatureCache.open(tmp_path / "resumed").complete
    assert all(f in [ids[r] for c in want for r in range(4 * c, min(4 * c + 4, len(ids)))] for f in failed)
    again = Flaky(bb)
    resumed = extract_features(items, again, tmp_path / "resumed", dict(CFG, num_workers=2), progress=False)
    assert again.calls == sum(1 for c, _ in calls if c not in want)
    assert resumed.complete and resumed.failed == clean.failed
    np.testing.assert_array_equal(resumed.valid, clean.valid)
    for name in ARRAYS:
        np.testing.assert_array_equal(resumed.read(name, range(resumed.n)), clean.read(name, range(clean.n)))
    idle = Flaky(bb)  # a finished cache is returned without any backbone call
    extract_features(items, idle, tmp_path / "resumed", CFG, progress=False)
    assert idle.calls == 0


def test_mismatched_cache_refused(bb, image_set, tmp_path):
    items = image_set[0][:5]
    extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    cases = [(_backbone(seed=1), "weights_sha256"), (_backbone(rho=0.25), "rho"), (_backbone(dense="vanilla"), "dense"),
             (_backbone(image_size=64), "image_size"), (_backbone(model_name="other"), "model_name"),
             (_backbone(geometry="letterbox"), "geometry"), (_backbone(quick_gelu=True), "activation"),
             (_backbone(masking="attention"), "masking"), (_backbone(precision="int8"), "int8")]
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


def test_a_file_edited_in_place_with_its_size_and_time_kept_is_noticed(bb, tmp_path):
    "Before: the cache trusted path + size + modification time, and reused features of an edited image."
    rng = np.random.default_rng(7)
    for k in range(3):
        Image.fromarray((rng.random((30, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{k}.png")
    items = [(str(k), tmp_path / f"{k}.png") for k in range(3)]
    extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    p, st = tmp_path / "1.png", os.stat(tmp_path / "1.png")
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(p).st_size, os.stat(p).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with pytest.raises(ValueError, match="image files changed"):
        extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    assert feats.content_fingerprint([str(p)]) != feats.content_fingerprint([str(tmp_path / "0.png")])


def test_cache_open_and_index(bb, image_set, tmp_path):
    items = image_set[0][:3]
    extract_features(items, bb, tmp_path / "c", CFG, progress=False)
    fc = FeatureCache.open(tmp_path / "c")
    assert fc.image_ids == ["rgb", "rgb_wide", "gray"] and fc.index_of("gray") == 2
    with pytest.raises(KeyError, match="not in the feature cache"):
        fc.index_of("zebra")
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        FeatureCache.open(tmp_path)
    os.remove(tmp_path / "c" / "g_h.npy")
    with pytest.raises(FileNotFoundError, match="g_h.npy is missing"):
        FeatureCache.open(tmp_path / "c")


def test_gather_and_views_equal_numpy(bb, image_set, tmp_path):
    fc = extract_features(image_set[0][:6], bb, tmp_path / "c", CFG, progress=False)
    rows = np.array([5, 0, 3, 3])
    got = fc.gather(rows)
    assert set(got) == set(FEATURE_KEYS)
    for k, v in got.items():
        want = np.load(tmp_path / "c" / f"{k}.npy")[rows].astype(np.float32)
        assert v.dtype == torch.float32 and torch.equal(v, torch.from_numpy(want)), k
    view = fc.take([4, 1, 5])
    assert view.n == 3 and torch.equal(view.gather([2, 0])["global"], fc.gather([5, 4])["global"])
    assert torch.equal(view.take([0, 2]).gather([1])["patches"], fc.gather([5])["patches"])
    mem = Features({k: np.load(tmp_path / "c" / f"{k}.npy") for k in FEATURE_KEYS})
    assert torch.equal(mem.gather(rows)["g_hc"], got["g_hc"])
    with pytest.raises(ValueError, match="disagree in length"):
        Features({"global": np.zeros((2, 3)), "patches": np.zeros((3, 2, 3))})


def test_npyfile_reads_and_writes_like_numpy(tmp_path):
    a = np.random.default_rng(1).standard_normal((9, 3, 4)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    f = NpyFile(tmp_path / "a.npy", writable=True)
    for rows in ([0], [8, 1, 1, 3], np.arange(9), [5, 6, 7, 2]):
        np.testing.assert_array_equal(f.read(rows), a[rows])
    f.write([0, 1, 2, 6], np.zeros((4, 3, 4)))
    f.close()
    b = np.load(tmp_path / "a.npy")
    assert (b[[0, 1, 2, 6]] == 0).all() and (b[[3, 4, 5, 7, 8]] == a[[3, 4, 5, 7, 8]]).all()
    np.save(tmp_path / "t.npy", np.ones((10, 100), np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 1000])  # a truncated cache file
    t = NpyFile(tmp_path / "t.npy")
    with pytest.raises(EOFError, match="truncated"):
        t.read([9])
    with pytest.raises(IndexError):
        t.read([10])
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 2))))
    with pytest.raises(ValueError, match="Fortran"):
        NpyFile(tmp_path / "f.npy")


def test_crops_and_tiles_share_the_cache(bb, image_set, tmp_path):
    items, refs, _ = image_set
    path = dict((i, p) for i, p in items)["rgb"]
    crops = [("rgb#0", path, (5, 6, 30, 31)), ("rgb#1", path, (0, 0, 52, 40)), ("rgb#bad", None, (0, 0, 2, 2))]
    fc = extract_features(crops, bb, tmp_path / "crops", CFG, progress=False)
    crop = _direct(bb, refs["rgb"].crop((5, 6, 30, 31)))
    np.testing.assert_allclose(fc.read("g_h", [0])[0].astype(np.float32), crop["g_h"][0].numpy(), atol=1e-3)
    assert fc.read("sizes", [0]).tolist() == [[52, 40]] and list(fc.failed) == ["rgb#bad"]
    tiles = extract_features(crops[:2], bb, tmp_path / "tiles", CFG, arrays=("global", "sizes"), progress=False)
    assert sorted(tiles.arrays) == ["global", "sizes"]
    torch.testing.assert_close(tiles.gather([0])["global"], fc.gather([0])["global"])  # encode_global = encode_images' g
    assert feats.cache_path(tmp_path, "x", bb, crops[:2]) != feats.cache_path(tmp_path, "x", bb, [c[:2] for c in crops[:2]])
    assert as_items(crops)[0] == ("rgb#0", str(Path(path).absolute()), (5, 6, 30, 31))


def test_torchvision_decode_on_the_cpu_records_the_same_failures(bb, image_set, tmp_path):
    items = image_set[0]
    pil = extract_features(items, bb, tmp_path / "pil", CFG, progress=False)
    tv = extract_features(items, bb, tmp_path / "tv", dict(CFG, decode="torchvision"), progress=False)
    assert tv.failed == pil.failed and (tv.valid == pil.valid).all()
    ids = tv.image_ids
    rgb, cmyk, png = ids.index("rgb"), ids.index("cmyk"), ids.index("gray")
    np.testing.assert_array_equal(tv.read("global", [png, cmyk]), pil.read("global", [png, cmyk]))  # PIL's path
    np.testing.assert_allclose(tv.read("global", [rgb]).astype(np.float32), pil.read("global", [rgb]).astype(np.float32), atol=0.15)
    assert tv.read("sizes", range(tv.n)).tolist() == pil.read("sizes", range(pil.n)).tolist()


def test_plain_jpeg_test(tmp_path):
    img = Image.fromarray((np.random.default_rng(3).random((36, 30, 3)) * 255).astype(np.uint8))
    img.save(tmp_path / "rgb.jpg")
    img.convert("CMYK").save(tmp_path / "cmyk.jpg")
    img.convert("L").save(tmp_path / "gray.jpg")
    img.save(tmp_path / "x.png")
    got = {f: feats._is_plain_jpeg((tmp_path / f).read_bytes()) for f in ("rgb.jpg", "cmyk.jpg", "gray.jpg", "x.png")}
    assert got == {"rgb.jpg": True, "cmyk.jpg": False, "gray.jpg": True, "x.png": False}
    assert not feats._is_plain_jpeg((tmp_path / "rgb.jpg").read_bytes()[:-10])  # truncated: no EOI marker


def test_bad_item_lists_and_config(bb, tmp_path):
    with pytest.raises(ValueError, match="duplicate image ids"):
        extract_features([("a", None), ("a", None)], bb, tmp_path / "c", CFG, progress=False)
    with pytest.raises(ValueError, match="no images"):
        extract_features([], bb, tmp_path / "c", CFG, progress=False)
    with pytest.raises(ValueError, match="unknown FeatureConfig fields"):
        as_config(FeatureConfig, {"batch": 3})
    with pytest.raises(ValueError, match="alpha_background"):
        FeatureConfig(alpha_background="pink")


def test_alpha_background_mean_normalises_to_zero(bb):
    img = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255) and to_rgb(img, (0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)
    x = bb.normalize(bb.preprocess(to_rgb(img, feats.background_rgb("mean", bb.mean)))[None])
    assert x.abs().max() < 0.01  # CLIP's mean colour normalises to ~0


def test_read_image_reasons(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(feats.ImageReadError, match="not a file"):
        read_image(tmp_path / "d.jpg")
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "ok.png")
    im = read_image(tmp_path / "ok.png")
    assert im.mode == "RGB" and im.size == (3, 2) and im.getpixel((0, 0)) == (1, 2, 3)


def test_dist_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        dist_env()


WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import torch
    from bacgcn.clip import load_clip, tiny_clip_config
    from bacgcn.features import extract_features

    args = json.loads(Path(sys.argv[1]).read_text())
    torch.manual_seed(0)
    bb = load_clip(model_config=tiny_clip_config(), device="cpu")

    class Counting:
        def __init__(self, bb): self.bb, self.calls = bb, 0
        def __getattr__(self, k): return getattr(self.bb, k)
        def encode_images(self, x):
            self.calls += 1
            return self.bb.encode_images(x)

    c = Counting(bb)
    cache = extract_features([tuple(i) for i in args["items"]], c, args["cache_dir"], args["config"], progress=False)
    out = Path(args["out"]) / f"calls-{os.environ['RANK']}.json"
    out.write_text(json.dumps(dict(calls=c.calls, n=cache.n, complete=cache.complete)))
""")


def _torchrun(tmp_path, items, cache_dir) -> dict:
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    for f in out.glob("calls-*.json"):
        f.unlink()
    args = dict(items=[(i, None if p is None else str(p)) for i, p in items], cache_dir=str(cache_dir), config=CFG, out=str(out))
    (tmp_path / "args.json").write_text(json.dumps(args))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # gloo on the CPU, as in CI
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(tmp_path / "worker.py"), str(tmp_path / "args.json")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {int(f.stem.split("-")[1]): json.loads(f.read_text()) for f in out.glob("calls-*.json")}


def test_torchrun_two_processes_write_one_cache_and_resume(bb, image_set, tmp_path):
    items = image_set[0]
    ref = extract_features(items, bb, tmp_path / "ref", CFG, progress=False)
    cache_dir = tmp_path / "cache"
    with pytest.raises(RuntimeError):  # a single process was interrupted after its first chunk
        extract_features(items, Flaky(bb, fail_at=3), cache_dir, CFG, progress=False)
    assert _progress(cache_dir)[0] == {0}
    calls = _torchrun(tmp_path, items, cache_dir)
    assert all(c["n"] == len(items) and c["complete"] for c in calls.values())
    # chunks 1, 2, 3 were left: dealt out as 1, 3 to rank 0 (2 + 1 calls) and 2 to rank 1 (no readable image)
    assert [calls[r]["calls"] for r in (0, 1)] == [3, 0]
    done = {f.name: json.loads(f.read_text())["done"] for f in cache_dir.glob("chunks-*.json")}
    assert done == {"chunks-0.json": [0, 1, 3], "chunks-1.json": [2]}
    got = FeatureCache.open(cache_dir)
    assert got.failed == ref.failed and (got.valid == ref.valid).all()
    for name in ARRAYS:
        np.testing.assert_array_equal(got.read(name, range(got.n)), ref.read(name, range(ref.n)))
    again = _torchrun(tmp_path, items, cache_dir)  # a rerun finds the finished cache and computes nothing
    assert [again[r]["calls"] for r in (0, 1)] == [0, 0]
