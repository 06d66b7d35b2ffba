"""Tests of bacgcn.shard: row I/O against np.load and np.memmap, the fast extraction against
extract_features (bit for bit on the CPU), and sharded extraction: in-process shards + merge, and
two torchrun processes (gloo) whose merged cache equals the single-process one, carries the
failures and resumes a half-finished shard."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.features import (ARRAY_NAMES, FeatureCache, FeatureSource, FileFeatureSource, NpyFile, extract_features,
                             read_manifest)
from bacgcn.shard import (dist_env, extract_fast, extract_shard, extract_sharded, jpeg_frame, merge_feature_shards,
                          shard_dir, shard_rows)
from bacgcn.train import Segment, TrainingSet

CFG = dict(batch_size=2, chunk_size=3, num_workers=0)


def _backbone(seed=0):
    torch.manual_seed(seed)
    return load_clip(model_config=tiny_clip_config())


class Counting:
    "A backbone wrapper that counts encode calls and raises on call `fail_at`."
    def __init__(self, bb, fail_at=None): self.bb, self.calls, self.fail_at = bb, 0, fail_at
    def __getattr__(self, k): return getattr(self.bb, k)
    def encode_images(self, x):
        self.calls += 1
        if self.calls == self.fail_at: raise RuntimeError("simulated crash")
        return self.bb.encode_images(x)


@pytest.fixture(scope="module")
def bb():
    return _backbone()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    "13 items: 10 JPEGs of different sizes, an empty file (row 2), a missing file (row 8), an RGBA PNG (row 12)."
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    out = []
    for k in range(10):
        p = d / f"im{k}.jpg"
        Image.fromarray((rng.random((30 + 3 * k, 40, 3)) * 255).astype(np.uint8)).save(p, quality=92)
        out.append((f"im{k}", str(p)))
    (d / "empty.jpg").write_bytes(b"")
    out.insert(2, ("empty", str(d / "empty.jpg")))
    out.insert(8, ("missing", str(d / "missing.jpg")))
    Image.fromarray((rng.random((20, 24, 4)) * 255).astype(np.uint8), "RGBA").save(d / "alpha.png")
    out.append(("alpha", str(d / "alpha.png")))
    return out


@pytest.fixture(scope="module")
def ref(bb, items, tmp_path_factory):
    return extract_features(items, bb, tmp_path_factory.mktemp("ref") / "cache", CFG, progress=False)


def _same_cache(a: FeatureCache, b: FeatureCache, eps=0.0):
    assert a.manifest == b.manifest
    for n in ARRAY_NAMES:
        if eps == 0: np.testing.assert_array_equal(a[n], b[n], err_msg=n)
        else: np.testing.assert_allclose(a[n].astype(np.float32), b[n].astype(np.float32), atol=eps, err_msg=n)


# ---- row I/O -------------------------------------------------------------------------------------

def test_npyfile_reads_and_writes_like_numpy(tmp_path):
    a = np.random.default_rng(1).standard_normal((9, 3, 4)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    f = NpyFile(tmp_path / "a.npy", writable=True)
    for rows in ([0], [8, 1, 1, 3], np.arange(9), [5, 6, 7, 2]):
        np.testing.assert_array_equal(f.read(rows), a[rows])
    np.testing.assert_array_equal(f[2:7], a[2:7])
    f.write([0, 1, 2, 6], np.zeros((4, 3, 4)))
    f.sync(); f.close()
    b = np.load(tmp_path / "a.npy")
    assert (b[[0, 1, 2, 6]] == 0).all() and (b[[3, 4, 5, 7, 8]] == a[[3, 4, 5, 7, 8]]).all()


def test_npyfile_bad_input(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not a readable .npy"):
        NpyFile(tmp_path / "x.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 2))))
    with pytest.raises(ValueError, match="Fortran"):
        NpyFile(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", np.ones((10, 100), np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:len(data) - 1000])  # truncated cache file
    f = NpyFile(tmp_path / "t.npy")
    with pytest.raises(EOFError, match="truncated"):
        f.read([9])
    with pytest.raises(IndexError):
        f.read([10])
    with pytest.raises(ValueError, match="do not fit"):
        NpyFile(tmp_path / "t.npy", writable=True).write([0], np.ones((1, 3)))


def test_file_source_equals_memmap_source(ref):
    fs, ms = FileFeatureSource.open(ref), FeatureSource.from_cache(ref)
    rows = np.array([12, 0, 5, 5, 3])
    a, b = fs.gather(rows), ms.gather(rows)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # and through a TrainingSet, as the Trainer reads it
    y = np.eye(13, 4, dtype=np.float32)
    ta, tb = (TrainingSet([Segment(s, np.arange(13), y, np.ones_like(y))]) for s in (fs, ms))
    fa, ya, _ = ta.batch([7, 1, 11])
    fb, yb, _ = tb.batch([7, 1, 11])
    for k in fa: torch.testing.assert_close(fa[k], fb[k], rtol=0, atol=0)
    torch.testing.assert_close(ya, yb)


# ---- fast extraction -----------------------------------------------------------------------------

def test_extract_fast_equals_extract_features(bb, items, ref, tmp_path):
    got = extract_fast(items, bb, tmp_path / "c", {**CFG, "num_workers": 1}, progress=False)  # one worker process
    _same_cache(got, ref)
    assert got.failed["empty"].startswith("empty") and got.failed["missing"].startswith("missing")


def test_extract_fast_resumes_after_a_crash(bb, items, ref, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_fast(items, Counting(bb, fail_at=2), tmp_path / "c", CFG, progress=False)
    m = read_manifest(tmp_path / "c")
    assert m["chunks_done"] == [0] and list(m["failed"]) == ["empty"] and not m["complete"]
    again = Counting(bb)
    got = extract_fast(items, again, tmp_path / "c", CFG, progress=False)
    assert again.calls == 6  # chunks 1-4: [3,4] [5] | [6,7] ([8] missing) | [9,10] [11] | [12]
    _same_cache(got, ref)
    with pytest.raises(ValueError, match="weights_sha256"):
        extract_fast(items, _backbone(seed=1), tmp_path / "c", CFG, progress=False)


def test_torchvision_decode_records_the_same_failures(bb, items, ref, tmp_path):
    got = extract_fast(items, bb, tmp_path / "c", CFG, dict(decode="torchvision"), progress=False)
    assert got.failed == ref.failed and (got.valid == ref.valid).all()
    np.testing.assert_array_equal(got.global_[12], ref.global_[12])  # PNG: PIL path, same pixels
    np.testing.assert_allclose(got.global_[:2].astype(np.float32), ref.global_[:2].astype(np.float32), atol=0.15)


def test_cmyk_and_gray_jpegs(bb, tmp_path):
    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.random((36, 30, 3)) * 255).astype(np.uint8))
    img.convert("CMYK").save(tmp_path / "cmyk.jpg")
    img.convert("L").save(tmp_path / "gray.jpg")
    assert jpeg_frame((tmp_path / "cmyk.jpg").read_bytes()) == (8, 4)
    assert jpeg_frame((tmp_path / "gray.jpg").read_bytes()) == (8, 1)
    its = [("cmyk", tmp_path / "cmyk.jpg"), ("gray", tmp_path / "gray.jpg")]
    pil = extract_features(its, bb, tmp_path / "pil", CFG, progress=False)
    tv = extract_fast(its, bb, tmp_path / "tv", CFG, dict(decode="torchvision"), progress=False)
    np.testing.assert_array_equal(tv.patches[0], pil.patches[0])  # CMYK is left to PIL
    np.testing.assert_allclose(tv.patches[1].astype(np.float32), pil.patches[1].astype(np.float32), atol=0.15)


# ---- sharding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,chunk,world", [(13, 3, 2), (13, 3, 5), (4, 4, 3), (100, 7, 4), (1, 1, 1)])
def test_shard_rows_partition_whole_chunks(n, chunk, world):
    ranges = [shard_rows(n, chunk, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (a, b), (c, _) in zip(ranges, ranges[1:]): assert b == c and a <= b
    assert all(lo % chunk == 0 for lo, hi in ranges if hi > lo)


def test_dist_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"): monkeypatch.delenv(k, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "2"); monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        dist_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="must be integers"):
        dist_env()


def test_shards_merge_into_the_single_process_cache(bb, items, ref, tmp_path):
    for r in range(2): extract_shard(items, bb, tmp_path, CFG, r, 2, progress=False)
    assert read_manifest(shard_dir(tmp_path, 1, 2))["image_ids"] == [i for i, _ in items[6:]]
    merged = merge_feature_shards(items, bb, tmp_path, CFG, 2, keep_shards=True, block_bytes=1000)  # several blocks per shard
    _same_cache(merged, ref)
    assert set(merged.failed) == {"empty", "missing"}
    assert shard_dir(tmp_path, 0, 2).exists()
    merge_feature_shards(items, bb, tmp_path, CFG, 2)
    assert not shard_dir(tmp_path, 0, 2).exists() and not shard_dir(tmp_path, 1, 2).exists()


def test_merge_refuses_missing_incomplete_or_foreign_shards(bb, items, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        merge_feature_shards(items, bb, tmp_path, CFG, 2)
    extract_shard(items, bb, tmp_path, CFG, 0, 2, progress=False)
    with pytest.raises(RuntimeError):
        extract_shard(items, Counting(bb, fail_at=2), tmp_path, CFG, 1, 2, progress=False)
    with pytest.raises(ValueError, match="not complete"):
        merge_feature_shards(items, bb, tmp_path, CFG, 2)
    shutil.rmtree(shard_dir(tmp_path, 1, 2))
    extract_shard(items, _backbone(seed=1), tmp_path, CFG, 1, 2, progress=False)  # made by other weights
    with pytest.raises(ValueError, match="weights_sha256"):
        merge_feature_shards(items, bb, tmp_path, CFG, 2)


def test_without_torchrun_it_is_the_plain_extraction(bb, items, ref, tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"): monkeypatch.delenv(k, raising=False)
    _same_cache(extract_sharded(items, bb, tmp_path / "a", CFG, progress=False), ref)
    _same_cache(extract_sharded(items, bb, tmp_path / "b", CFG, extract_fn=extract_fast, progress=False), ref)
    assert not any(p.name.startswith("shard-") for p in (tmp_path / "a").iterdir())


WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import torch
    from bacgcn.clip import load_clip, tiny_clip_config
    from bacgcn.shard import extract_fast, extract_sharded

    args = json.loads(Path(sys.argv[1]).read_text())
    torch.manual_seed(0)
    bb = load_clip(model_config=tiny_clip_config())

    class Counting:
        def __init__(self, bb): self.bb, self.calls = bb, 0
        def __getattr__(self, k): return getattr(self.bb, k)
        def encode_images(self, x):
            self.calls += 1
            return self.bb.encode_images(x)

    c = Counting(bb)
    cache = extract_sharded([tuple(i) for i in args["items"]], c, args["cache_dir"], args["config"],
                            extract_fn=extract_fast if args["fast"] else None, progress=False)
    rank = os.environ["RANK"]
    (Path(args["out"]) / f"calls-{rank}.json").write_text(json.dumps(dict(calls=c.calls, n=len(cache), complete=cache.complete)))
""")


def _torchrun(tmp_path, items, cache_dir, fast: bool) -> dict:
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "out"; out.mkdir(exist_ok=True)
    for f in out.glob("calls-*.json"): f.unlink()
    (tmp_path / "args.json").write_text(json.dumps(dict(items=items, cache_dir=str(cache_dir), config=CFG, fast=fast, out=str(out))))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # gloo on CPU, as in CI
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(tmp_path / "worker.py"), str(tmp_path / "args.json")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {int(f.stem.split("-")[1]): json.loads(f.read_text()) for f in out.glob("calls-*.json")}


def test_torchrun_two_processes_merge_resume_and_rerun(bb, items, ref, tmp_path):
    cache_dir = tmp_path / "cache"
    # rank 0's shard was interrupted after its first chunk
    with pytest.raises(RuntimeError):
        extract_features(items[:6], Counting(bb, fail_at=2), shard_dir(cache_dir, 0, 2), CFG, progress=False)
    assert read_manifest(shard_dir(cache_dir, 0, 2))["chunks_done"] == [0]
    calls = _torchrun(tmp_path, items, cache_dir, fast=False)
    assert calls[0]["calls"] == 2  # only chunk 1 ([3,4] [5]) was left for rank 0
    assert calls[1]["calls"] == 4  # chunks 2-4 ([6,7] | [9,10] [11] | [12]; row 8 is missing)
    assert all(c["n"] == 13 and c["complete"] for c in calls.values())
    merged = FeatureCache.open(cache_dir)
    _same_cache(merged, ref, eps=2e-3)
    assert merged.failed == ref.failed and not any(p.name.startswith("shard-") for p in cache_dir.iterdir())
    # a rerun finds the finished cache and computes nothing
    again = _torchrun(tmp_path, items, cache_dir, fast=True)
    assert [again[r]["calls"] for r in (0, 1)] == [0, 0]
    _same_cache(FeatureCache.open(cache_dir), merged)


def test_extract_experiment_sharded_without_torchrun(tmp_path, monkeypatch):
    from bacgcn.shard import extract_experiment_sharded
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"): monkeypatch.delenv(k, raising=False)
    img = tmp_path / "img"; img.mkdir()
    rng = np.random.default_rng(5)
    for k in range(3): Image.fromarray((rng.random((30, 34, 3)) * 255).astype(np.uint8)).save(img / f"a{k}.jpg")
    (tmp_path / "train.txt").write_text("a0 0\na1 3\na2 4 5\n")
    cfg = dict(dataset="labels", vocab="voc2007", data_root=str(tmp_path), train_split="train.txt", test_split="", image_root=str(img),
               clip=dict(model_config=tiny_clip_config(), model_name="tiny"), features=dict(batch_size=2, num_workers=0),
               cache_dir=str(tmp_path / "cache"))
    caches = extract_experiment_sharded(cfg, progress=False, fast=dict(decode="pil"))
    assert len(caches) == 1 and caches[0].image_ids == ["a0", "a1", "a2"] and caches[0].complete and caches[0].valid.all()
    assert caches[0].path.parent == tmp_path / "cache"


def test_fast_config_and_encoder_bad_input(bb):
    from types import SimpleNamespace
    from torchvision import transforms as T
    from bacgcn.shard import DeviceEncoder, FastConfig, tensor_transforms, uint8_preprocess
    with pytest.raises(ValueError, match="decode='gpu'"):
        FastConfig(decode="gpu")
    with pytest.raises(ValueError, match="cpu_precision"):
        FastConfig(cpu_precision="fp16")
    with pytest.raises(ValueError, match="unknown FastConfig fields"):
        FastConfig.from_any({"batch": 3})
    with pytest.raises(ValueError, match="takes uint8 images"):
        DeviceEncoder(bb)(torch.zeros(1, 3, 32, 32))
    odd = SimpleNamespace(preprocess=T.Compose([T.Resize(32), T.ToTensor()]))
    with pytest.raises(ValueError, match="must end with ToTensor and Normalize"):
        uint8_preprocess(odd)
    squash = SimpleNamespace(preprocess=T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    with pytest.raises(ValueError, match="use decode='pil'"):
        tensor_transforms(squash)


def test_attention_fix_follows_the_fast_config_and_is_restored(bb):
    "The backbone's own CUDA autocast enters ContiguousAttentionInputs unless a DeviceEncoder run switches it off; the flag is restored."
    from bacgcn.clip import ContiguousAttentionInputs
    from bacgcn.shard import DeviceEncoder
    assert bb.contiguous_attention is True
    x = torch.randint(0, 256, (2, 3, bb.image_size, bb.image_size), dtype=torch.uint8)
    for on in (False, True):
        enc = DeviceEncoder(bb, dict(contiguous_attention=on))
        with enc.autocast(): assert bb.contiguous_attention is on
        assert bb.contiguous_attention is True
    with pytest.raises(RuntimeError):
        with DeviceEncoder(bb, dict(contiguous_attention=False)).autocast(): raise RuntimeError("interrupted")
    assert bb.contiguous_attention is True
    # the mode changes no number: the same features with and without it
    ref = DeviceEncoder(bb)(x)
    with ContiguousAttentionInputs(): got = DeviceEncoder(bb)(x)
    for k in ("global", "patches", "g_h", "g_hc"): torch.testing.assert_close(got[k], ref[k])
