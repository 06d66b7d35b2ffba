"""Tests of bacgcn.bench on tiny sizes: the one-image baseline and the batched pipeline give the same
features, the RSS helper sees allocations (and the memory-map growth the pread reader avoids), the
synthetic COCO-scale cache generator writes the right shapes, and the result files hold the fields
the issue asks for. No timing is asserted."""
import json
import os
import sys

import numpy as np
import pytest
import torch

from bacgcn.bench import (PeakRSS, bench_extract, bench_growth, bench_train, cache_bytes, check_disk, device_slug,
                          flops_per_image, format_table, one_image_loop, rss, synthetic_cache, write_jpegs)
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.features import FeatureCache, FeatureSource, FileFeatureSource, extract_features
from bacgcn.shard import DeviceEncoder, extract_fast

TINY = dict(model_config=tiny_clip_config(), model_name="tiny")
linux_proc = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for RSS")


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return load_clip(model_config=tiny_clip_config())


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_jpegs(tmp_path_factory.mktemp("jpg"), 7, size=(50, 38), seed=1)


def test_write_jpegs(jpegs):
    from PIL import Image
    assert [i for i, _ in jpegs] == [f"img{k:06d}" for k in range(7)]
    with Image.open(jpegs[3][1]) as im: assert (im.format, im.size, im.mode) == ("JPEG", (50, 38), "RGB")


def test_baseline_and_pipelines_give_the_same_features(bb, jpegs, tmp_path):
    base = one_image_loop(jpegs, bb)
    assert base["patches"].shape == (7, 16, 32) and base["attn"].shape == (7, 16)
    ref = extract_features(jpegs, bb, tmp_path / "ref", dict(batch_size=3, num_workers=0), progress=False)
    fast = extract_fast(jpegs, bb, tmp_path / "fast", dict(batch_size=3, num_workers=0), progress=False)
    for k in ("global", "patches", "g_h", "g_hc", "attn"):
        np.testing.assert_allclose(fast[k].astype(np.float32), base[k], atol=2e-3, err_msg=k)  # fp16 cache vs fp32 loop
        np.testing.assert_array_equal(fast[k], ref[k])


def test_bf16_baseline_uses_the_encoder_context(bb, jpegs):
    enc = DeviceEncoder(bb, dict(cpu_precision="bf16"))
    a, b = one_image_loop(jpegs[:2], bb), one_image_loop(jpegs[:2], bb, enc.autocast)
    assert not np.array_equal(a["global"], b["global"])  # bf16 did run
    np.testing.assert_allclose(a["global"], b["global"], atol=5e-2)


def test_flops_per_image_counts_the_attention(bb):
    # tiny CLIP: width 64, 2 layers, 17 tokens; three forwards of the tower; the fused attention path would hide the blocks
    per_forward = 2 * (17 * 64 * 3 * 64 + 2 * 17 * 17 * 64 + 17 * 64 * 64 + 2 * 17 * 64 * 256)  # qkv, scores+values, out, mlp
    f = flops_per_image(bb)
    assert 3 * 2 * per_forward <= f <= 3 * 2 * per_forward * 1.6, f
    assert torch.backends.mha.get_fastpath_enabled()  # restored


@linux_proc
def test_peak_rss_sees_an_allocation_and_resets():
    r = rss()
    assert r["rss"] > 0 and r["anon"] > 0
    with PeakRSS() as m1:
        x = np.ones(30_000_000)  # 240 MB
        del x
    with PeakRSS() as m2:
        pass
    assert m1.peak - m1.start > 200e6 and m1.peak_anon > 200e6
    if m2.reset_ok: assert m2.peak < m1.peak - 150e6


@linux_proc
def test_memmap_reads_grow_rss_pread_reads_do_not(tmp_path):
    n = 800
    cache = synthetic_cache(tmp_path / "c", n, n_patches=196, embed_dim=512)  # 160 MB of fp16 patches
    rows = np.arange(n)
    for source, grows in ((FileFeatureSource.open(cache), False), (FeatureSource.from_cache(FeatureCache.open(cache.path)), True)):
        source.gather(rows[:20])  # first batch: buffers and allocator arenas, not the data read
        with PeakRSS() as m:
            for i in range(20, n, 20): source.gather(rows[i:i + 20])  # batches of 4 MB fp16, 8 MB fp32
        if grows: assert m.peak_file - m.start_file > 120e6, (m.peak_file, m.start_file)  # mapped file pages stay resident
        else:
            assert m.peak_file - m.start_file < 8e6, (m.peak_file, m.start_file)  # pread maps no file pages
            assert m.peak - m.start < 60e6, (m.peak, m.start)  # well under the 156 MB read: batches are freed
        del source


def test_synthetic_cache_shapes_and_reuse(tmp_path):
    c = synthetic_cache(tmp_path / "s", 7, n_patches=16, embed_dim=8, block=3)
    assert (c.patches.shape, c.global_.shape, c.g_h.shape, c.g_hc.shape, c.attn.shape) == ((7, 16, 8), (7, 8), (7, 8), (7, 8), (7, 16))
    assert c.patches.dtype == np.float16 and c.complete and c.valid.all() and c.manifest["chunks_done"] == [0, 1, 2]
    assert len(set(c.image_ids)) == 7
    np.testing.assert_allclose(np.linalg.norm(c.global_.astype(np.float32), axis=-1), 1, atol=2e-3)
    assert 0 <= c.attn.min() and c.attn.max() <= 1
    mtime = (tmp_path / "s" / "patches.npy").stat().st_mtime_ns
    assert synthetic_cache(tmp_path / "s", 7, n_patches=16, embed_dim=8, block=3).path == c.path
    assert (tmp_path / "s" / "patches.npy").stat().st_mtime_ns == mtime  # reused, not rewritten
    c2 = synthetic_cache(tmp_path / "s", 9, n_patches=16, embed_dim=8, block=3)
    assert c2.patches.shape == (9, 16, 8)  # another size: regenerated
    assert os.path.getsize(tmp_path / "s" / "patches.npy") >= 9 * 16 * 8 * 2
    assert cache_bytes(82081, 196, 512) == 82081 * (196 * 512 + 3 * 512 + 196) * 2  # ~16.6 GB


def test_check_disk_refuses_when_too_small(tmp_path):
    assert check_disk(tmp_path, 1) > 0
    with pytest.raises(ValueError, match="GB free"):
        check_disk(tmp_path, 1 << 62)


def test_bench_extract_result(tmp_path):
    r = bench_extract(tmp_path, clip=TINY, image_size=32, n_images=5, n_baseline=2, batch_size=2, num_workers=0,
                      jpeg_size=(40, 36), fast=dict(cpu_precision="fp32"), variants=False)
    saved = json.loads((tmp_path / "extract-cpu.json").read_text())
    for k in ("device", "images_per_s", "baseline_images_per_s", "ratio", "flops_per_image", "compute_floor_images_per_s",
              "matmul_tflops", "stages_images_per_s", "limited_by", "versions", "date", "loadavg_start", "loadavg_end",
              "cpu_seconds_per_image", "baseline_cpu_seconds_per_image", "ratio_cpu_time"):
        assert k in saved, k
    assert saved["ratio"] == pytest.approx(saved["images_per_s"] / saved["baseline_images_per_s"])
    assert saved["device_type"] == "cpu" and saved["n_images"] == 5 and saved["precision"] == "fp32"
    assert max(saved["agreement_max_abs"].values()) < 2e-3
    table = format_table(r)
    assert "one image per forward" in table and "compute floor" in table and "limited by" in table


def test_bench_extract_variants_on_cpu(tmp_path):
    r = bench_extract(None, clip=TINY, image_size=32, n_images=4, n_baseline=2, batch_size=2, num_workers=0,
                      jpeg_size=(40, 36), fast=dict(cpu_precision="bf16"), n_baseline_same_precision=1)
    assert set(r["variants"]) == {"pipeline_fp32", "baseline_bf16"} and r["precision"] == "bf16"
    assert r["baseline_precision"] == "fp32"
    assert not (tmp_path / "extract-cpu.json").exists()  # out_dir=None writes nothing


def test_bench_train_result(tmp_path):
    r = bench_train(tmp_path, n_images=200, n_patches=16, embed_dim=8, batch_size=16, n_batches=3, cache_dir=tmp_path / "c")
    assert set(r["readers"]) == {"pread", "memmap"} and r["partial"]
    for v in r["readers"].values():
        assert v["n_rows"] == 48 and v["partial"] and v["epoch_s"] == pytest.approx(v["seconds"] * 200 / 48)
        assert v["peak_rss_gb"] > 0 and "data_share" in v and v["cpu_epoch_s"] == pytest.approx(v["cpu_seconds"] * 200 / 48)
    assert json.loads((tmp_path / "train-cpu.json").read_text())["cache"]["n_images"] == 200
    full = bench_train(None, n_images=40, n_patches=16, embed_dim=8, batch_size=16, n_batches=None, readers=("pread",),
                       cache_dir=tmp_path / "c2", keep_cache=False)
    assert not full["partial"] and full["readers"]["pread"]["n_rows"] == 40 and not (tmp_path / "c2").exists()
    assert "peak RSS" in format_table(full)
    with pytest.raises(ValueError, match="choose 'pread' or 'memmap'"):
        bench_train(None, n_images=40, n_patches=16, embed_dim=8, batch_size=16, n_batches=1, readers=("mmap",), cache_dir=tmp_path / "c3")


def test_bench_growth_rows(tmp_path):
    g = bench_growth(tmp_path, clip=TINY, scales=(1, 2), sizes=(32, 64), extract_images=2, train_images=32, batch_size=2,
                     num_workers=0, fast=dict(cpu_precision="fp32"), train_batch_size=16, repeats=1)
    got = [(r["stage"], r["image_size"], r["n_images"]) for r in g["rows"]]
    assert got == [("extract", 32, 2), ("extract", 32, 4), ("train_epoch", 32, 32), ("train_epoch", 32, 64),
                   ("extract", 64, 2), ("train_epoch", 64, 32)]
    base = g["rows"][0]
    assert base["relative"] == 1 and g["rows"][1]["relative"] == pytest.approx(g["rows"][1]["seconds"] / base["seconds"])
    assert all(r["cpu_seconds"] > 0 and r["cpu_per_image_relative"] > 0 for r in g["rows"]) and base["cpu_per_image_relative"] == 1
    assert (tmp_path / "growth-cpu.json").exists() and "per image rel." in format_table(g)


def test_format_table_rejects_other_dicts():
    with pytest.raises(ValueError, match="not a benchmark result"):
        format_table({"kind": "other"})
    assert device_slug("cpu") == "cpu"
