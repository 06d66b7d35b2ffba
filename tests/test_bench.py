"""Tests of benchmarks/bench.py on a tiny CLIP and tiny caches: the one-image loop and the batched pipeline give the
same features for every masking reading, the FLOP counter sees a forward exactly, the result files hold one row per
reading and precision with the device label, and the training benchmark reads the rows it says. No timing is
asserted."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench

from bacgcn.clip import MASKINGS, tiny_clip_config
from bacgcn.config import device_name
from bacgcn.features import FeatureCache

TINY = dict(model_config=tiny_clip_config(layers=4), model_name="tiny", image_size=32)  # 4 blocks, 16 patches, W 64
SMALL_JPEGS = [(50, 38), (38, 50), (44, 44)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return bench.write_jpegs(tmp_path_factory.mktemp("jpg"), 5, sizes=SMALL_JPEGS, seed=1)


def test_write_jpegs_cycles_through_the_sizes(jpegs):
    from PIL import Image

    sizes = []
    for _, p in jpegs:
        with Image.open(p) as im:
            assert (im.format, im.mode) == ("JPEG", "RGB")
            sizes.append(im.size)
    assert sizes == [SMALL_JPEGS[i % 3] for i in range(5)]


@pytest.mark.parametrize("masking", MASKINGS)
def test_one_image_loop_and_pipeline_give_the_same_features(masking, jpegs, tmp_path):
    bb = bench.backbone(TINY, masking, "fp32", "cpu")
    loop = bench.one_image_loop(jpegs, bb)
    assert loop["patches"].shape == (5, 16, 32) and loop["g_h"].shape == (5, 32)
    cache = bench.pipeline(jpegs, bb, tmp_path / "c", batch_size=2, num_workers=0)  # batches of 2, fp16 on disk
    for k in bench.KEYS:
        np.testing.assert_allclose(cache.read(k, np.arange(5)), loop[k], atol=2e-3, err_msg=f"{masking} {k}")
    other = bench.one_image_loop(jpegs[:2], bench.backbone(TINY, "attention" if masking != "attention" else "pixel",
                                                           "fp32", "cpu"))  # fmt: skip
    assert np.abs(other["g_h"] - loop["g_h"][:2]).max() > 1e-2  # the readings differ: the check above has teeth
    np.testing.assert_allclose(other["global"], loop["global"][:2], atol=1e-5)  # same weights, same g


def test_flops_count_a_forward_exactly_and_order_the_readings():
    L, W, N, D, layers = 17, 64, 16, 32, 4  # tokens, width, patches, embed dim of TINY
    block = 2 * L * W * 3 * W + 2 * 2 * L * L * W + 2 * L * W * W + 2 * 2 * L * W * 4 * W  # qkv, QK^T and AV, out, MLP
    plain = layers * block + 2 * N * (3 * 8 * 8) * W + 2 * W * D  # + the patch convolution, + the projection
    bbs = {m: bench.backbone(TINY, m, "fp32", "cpu") for m in MASKINGS}
    assert bench.flops_per_image(bbs["pixel"], "global")["gflop"] == pytest.approx(plain / 1e9, rel=1e-9)
    f = {m: bench.flops_per_image(bb)["gflop"] for m, bb in bbs.items()}
    assert f["pixel"] > f["token_drop"] > f["attention"] > plain / 1e9
    assert f["attention"] <= 1.3 * plain / 1e9
    assert f["pixel"] >= 3 * plain / 1e9  # the image and two masked views, each a full pass
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_extract_result_has_one_row_per_reading_and_precision(tmp_path):
    r = bench.bench_extract(tmp_path, clip=TINY, images=4, baseline=2, batch_size=2, workers=0,
                            precisions=["fp32", "int8"], settings=False)  # fmt: skip
    saved = json.loads((tmp_path / f"extract-{bench.device_slug('cpu')}.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(r["rows"]))
    assert saved["device"] == device_name("cpu") and saved["device_type"] == "cpu"
    assert len(saved["loadavg_start"]) == 3 and saved["torch_threads"] >= 1
    got = sorted((row["masking"], row["precision"]) for row in saved["rows"])
    assert got == sorted((m, p) for m in ("pixel/black", "attention/1", "token_drop") for p in ("fp32", "int8"))
    assert len({row["weights_sha256"] for row in saved["rows"]}) == 1  # every reading on the same weights
    for row in saved["rows"]:
        assert row["images_per_s"] > 0 and row["baseline_images_per_s"] > 0 and row["cpu_s_per_image"] > 0
        if row["precision"] == "fp32":
            assert max(row["agreement_max_abs"].values()) < 2e-3
            assert "cosine_to_fp32" not in row
        else:
            for k, c in row["cosine_to_fp32"].items():
                assert 0.9 < c["min"] <= c["mean"] < 1.0, (row["masking"], k, c)  # close to fp32, and not fp32
    gflop = {row["masking"]: row["gflop"] for row in saved["rows"]}
    assert gflop["pixel/black"] > gflop["token_drop"] > gflop["attention/1"]
    assert set(saved["goal"]["attention_vs_pixel"]) == {"fp32", "int8"}
    assert "int8 cosine" in bench.table(r)


def test_goal_is_judged_on_the_right_rows():
    rows = [dict(masking="pixel/black", precision="fp32", images_per_s=1.0, speedup=1.0, vs_pixel=1.0),
            dict(masking="attention/1", precision="fp32", images_per_s=2.6, speedup=1.1, vs_pixel=2.6),
            dict(masking="attention/1", precision="int8", images_per_s=2.0, speedup=1.0, vs_pixel=2.4)]
    assert bench.goal(rows, "cpu")["met"] == {"fp32": True, "int8": False}
    gpu = [dict(masking="attention/1", precision="fp16", images_per_s=3100.0, speedup=16.0),
           dict(masking="attention/1", precision="bf16", images_per_s=3200.0, speedup=12.0)]
    assert not bench.goal(gpu, "cuda")["met"]  # the fastest is under 15x the loop
    gpu[1]["speedup"] = 15.5
    assert bench.goal(gpu, "cuda")["met"]


def test_synthetic_cache_is_a_cache_of_unit_rows(tmp_path):
    c = bench.synthetic_cache(tmp_path / "s", 7, n_patches=5, embed_dim=8, block=3)
    again = FeatureCache.open(tmp_path / "s")
    assert again.complete and again.n == 7 and again.valid.all()
    b = again.gather([6, 0, 6])
    assert b["patches"].shape == (3, 5, 8) and b["global"].dtype == torch.float32
    torch.testing.assert_close(b["patches"].norm(dim=-1), torch.ones(3, 5), atol=2e-3, rtol=0)
    torch.testing.assert_close(b["patches"][0], b["patches"][2])
    mtime = (tmp_path / "s" / "patches.npy").stat().st_mtime_ns
    assert bench.synthetic_cache(tmp_path / "s", 7, n_patches=5, embed_dim=8, block=3).path == c.path
    assert (tmp_path / "s" / "patches.npy").stat().st_mtime_ns == mtime  # reused, not rewritten
    assert bench.synthetic_cache(tmp_path / "s", 9, n_patches=5, embed_dim=8, block=3).n == 9  # another shape: new


def test_check_disk_refuses_with_both_sizes(tmp_path):
    assert bench.check_disk(tmp_path, 1) > 0
    with pytest.raises(ValueError, match=r"GB free, the synthetic cache needs .* GB"):
        bench.check_disk(tmp_path, 1 << 62)
    assert bench.cache_bytes(82081, 196, 512) == 82081 * 199 * 512 * 2  # 16.7 GB: COCO at 224 px


def test_train_reads_the_rows_it_reports(tmp_path):
    r = bench.bench_train(tmp_path, images=200, patches=16, dim=8, batch_size=16, batches=3, cache_dir=tmp_path / "c")
    assert r["n_rows"] == 48 and r["partial"] and r["seconds"] > 0
    assert r["epoch_s"] == pytest.approx(r["seconds"] * 200 / 48) and r["peak_rss_gb"] > 0
    assert 0 < r["data_seconds"] and not (tmp_path / "c").exists()  # the cache it wrote is removed
    assert json.loads((tmp_path / f"train-{bench.device_slug('cpu')}.json").read_text())["n_rows"] == 48
    whole = bench.bench_train(None, images=40, patches=4, dim=8, batch_size=16, cache_dir=tmp_path / "d")
    assert whole["n_rows"] == 40 and not whole["partial"] and whole["epoch_s"] == pytest.approx(whole["seconds"])
    assert "rows read in" in bench.table(whole)


def test_growth_rows(tmp_path):
    g = bench.bench_growth(None, clip=TINY, scales=(1, 2), sizes=(32, 64), images=2, train_images=32, batch_size=2,
                           workers=0, train_batch_size=16, work_dir=tmp_path)  # fmt: skip
    got = [(r["stage"], r["image_size"], r["n_images"]) for r in g["rows"]]
    assert got == [("extract", 32, 2), ("train_epoch", 32, 32), ("extract", 32, 4), ("train_epoch", 32, 64),
                   ("extract", 64, 2), ("train_epoch", 64, 32)]  # fmt: skip
    assert all(r["seconds"] > 0 for r in g["rows"]) and g["rows"][0]["relative"] == 1.0
    assert list(tmp_path.iterdir()) == []  # temporary caches and images cleaned up


def test_options_reach_the_functions():
    a = vars(bench.parse_args(["extract", "--images", "3", "--no-settings", "--precisions", "fp32,int8"]))
    assert (a["images"], a["settings"], a["precisions"]) == (3, False, ["fp32", "int8"])
    assert "baseline" not in a  # not given: the function's default holds
    g = vars(bench.parse_args(["growth", "--scales", "1,3"]))
    assert g["scales"] == [1, 3]
    t = vars(bench.parse_args(["train", "--batches", "5", "--no-cold", "--out", "none"]))
    assert (t["batches"], t["cold"], t["out"]) == (5, False, "none")
    with pytest.raises(SystemExit):
        bench.parse_args(["extract", "--batches", "5"])  # a train option


def test_bacgcn_bench_runs_the_script(tmp_path, capsys, monkeypatch):
    from bacgcn.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `bacgcn bench` hands its arguments on through sys.argv
    args = ["--images", "64", "--patches", "4", "--dim", "8", "--batch-size", "16", "--out", str(tmp_path)]
    assert main(["bench", "train", *args, "--cache-dir", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / f"train-{bench.device_slug('cpu')}.json").read_text())["n_rows"] == 64
    assert "64 rows read" in capsys.readouterr().out
    assert re.fullmatch(r"cpu(-[a-z0-9]+)*", bench.device_slug("cpu"))


@pytest.mark.slow
def test_settings_sweep_changes_one_setting_at_a_time(tmp_path, jpegs):
    s = bench.extract_settings(jpegs[:4], TINY, torch.device("cpu"), dict(batch_size=2, num_workers=0, decode="pil"),
                               1, tmp_path / "c")  # fmt: skip
    v = s["variants"]
    assert {"default", "num_workers=1", "num_workers=2", "attention=sdpa", "attention=math", "compile",
            "batch_size=1", "batch_size=4"} <= set(v)  # fmt: skip
    assert all(r.get("images_per_s", 0) > 0 for r in v.values()), v
    assert v["default"]["vs_default"] == 1.0 and torch.get_num_threads() >= 1
