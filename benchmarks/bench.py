"""bacgcn benchmarks: CLIP feature extraction per masking reading and precision, training epochs on a COCO-sized
cache, and how both costs grow. Absolute figures carry the device they were measured on, ratios are against a baseline
measured in the same process, warm-ups are untimed. Results: results/bench/<what>-<device>.json and a printed table.

    python benchmarks/bench.py extract|train|growth [options]     # or: bacgcn bench extract|train|growth [options]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import math
import os
import platform
import re
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel

from bacgcn.clip import MASKINGS, cpu_has_bf16, load_clip
from bacgcn.config import cpu_model, device_name, resolve_device
from bacgcn.features import FEATURE_KEYS, MANIFEST, FeatureCache, FeatureConfig, NpyFile, extract_features, read_image
from bacgcn.files import write_json_atomic
from bacgcn.graph import clip_gcn_adjacency
from bacgcn.model import BACGCN, ModelConfig
from bacgcn.train import Segment, TrainConfig, Trainer, TrainingSet

OUT = Path(__file__).resolve().parent.parent / "results" / "bench"
VIT_B16 = dict(model_name="ViT-B-16", pretrained="random")  # speed does not depend on the weights: no download
COCO_SIZES = [(640, 480), (640, 427), (480, 640), (500, 375), (640, 360), (427, 640), (612, 612), (640, 512)]
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
KEYS = (*FEATURE_KEYS, "attn")


# -- labels and measuring ----------------------------------------------------------------------------------------------
def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(device) -> dict:
    """What every result is labelled with: device, CPU model, the CPU flags that decide fp32, int8 and bf16 speed
    (read from /proc/cpuinfo, nothing assumed), threads, versions, date, load average."""
    dev = torch.device(device)
    versions = {m: getattr(__import__(m), "__version__", None) for m in ("torch", "torchvision", "open_clip", "bacgcn")}
    with open("/proc/cpuinfo") as f:
        flags = next((line.split() for line in f if line.startswith("flags")), [])
    return dict(device=device_name(dev), device_type=dev.type, cpu=cpu_model(), cpu_has_bf16=cpu_has_bf16(),
                cpu_flags=[f for f in CPU_FLAGS if f in flags], cpus=len(os.sched_getaffinity(0)),
                torch_threads=torch.get_num_threads(), quantized_engine=torch.backends.quantized.engine,
                python=platform.python_version(), versions=versions, loadavg_start=loadavg(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def device_slug(device) -> str:
    "The device in a file name: 'cpu-amd-epyc', 'cpu-intel-xeon', or the GPU's name ('h100-80gb-hbm3')."
    dev = torch.device(device)
    name = device_name(dev).lower().replace("nvidia", "") if dev.type == "cuda" else f"cpu {cpu_model().lower()}"
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(r\)|\(tm\)|processor|cpu @.*", "", name)).strip("-")


def save(result: dict, out_dir) -> dict:
    result["loadavg_end"] = loadavg()
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / f"{result['kind']}-{device_slug(result['device_type'])}.json", result)
    return result


def cpu_seconds() -> float:
    "User + system time of this process and its finished children (DataLoader workers)."
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def timed(fn, device="cpu") -> tuple[float, float, object]:
    "(wall seconds, CPU seconds, result) of `fn()`, CUDA synchronised before and after."
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    sync()
    c0, t0 = cpu_seconds(), time.perf_counter()
    r = fn()
    sync()
    return time.perf_counter() - t0, cpu_seconds() - c0, r


def rss_gb(field: str = "VmHWM") -> float:
    "VmHWM (peak since the last reset) or VmRSS of this process, in GB."
    with contextlib.suppress(OSError, StopIteration):
        return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) / 2**20
    return float("nan")


def reset_peak_rss() -> bool:
    "Reset this process's VmHWM to its current RSS (Linux); False where that is not allowed."
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
        return True
    return False


def drop_page_cache(paths) -> None:
    "Evict these files' pages (only theirs) from the page cache: the reads that follow come from the disk."
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


# -- extraction --------------------------------------------------------------------------------------------------------
def write_jpegs(folder, n: int, sizes=COCO_SIZES, seed: int = 0) -> list[tuple[str, str]]:
    "`n` photo-like JPEGs (smooth colour fields plus noise, quality 90) at COCO-like `sizes`, in turn: (id, path)."
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        rng, (w, h) = np.random.default_rng([seed, i]), sizes[i % len(sizes)]
        base = Image.fromarray(rng.integers(0, 256, (max(h // 32, 2), max(w // 32, 2), 3), dtype=np.uint8))
        px = np.asarray(base.resize((w, h), Image.BICUBIC), np.int16) + rng.integers(-12, 13, (h, w, 3), np.int16)
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(p := folder / f"img{i:06d}.jpg", quality=90)
        items.append((p.stem, str(p)))
    return items


def backbone(clip: dict | None, masking: str, precision: str, device, seed: int = 0):
    "A CLIP (ViT-B/16 unless `clip` says otherwise) with random weights from `seed`: the same for every reading."
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices (int8)
        return load_clip({**VIT_B16, **(clip or {})}, masking=masking, precision=precision, device=str(device))


def precisions_for(device) -> list[str]:
    "Precisions the device runs natively: fp32, int8 (+ bf16 where the CPU has bf16 units); fp16, bf16 on CUDA."
    if torch.device(device).type == "cuda":
        return ["fp16", "bf16"]
    return ["fp32", "int8"] + ["bf16"] * cpu_has_bf16()


def flops_per_image(bb, what: str = "forward") -> dict:
    """GFLOP of `bb.forward` (every feature BAC-GCN reads) or `bb.encode_global` (one plain forward) on one image, and
    the patch convolution's share. Attention runs in its explicit form, so that the counter sees its matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, bb.image_size, bb.image_size, dtype=torch.uint8, device=bb.device)
    with speed_settings(bb, attention="math"), FlopCounterMode(display=False) as fc:
        (bb.forward if what == "forward" else bb.encode_global)(x)
    total = fc.get_total_flops()
    conv = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
    return dict(gflop=total / 1e9, conv_share=conv / total)


@contextlib.contextmanager
def speed_settings(bb, threads=None, attention="fastpath", compile=False):
    """Inside the block: `threads` torch threads; attention as "fastpath" (torch's fused MHA, the default), "sdpa"
    (MHA's composite path, fused SDPA kernel) or "math" (explicit softmax(QK^T)V); `bb.encode_images` compiled."""
    threads0, fastpath0 = torch.get_num_threads(), torch.backends.mha.get_fastpath_enabled()
    torch.set_num_threads(threads or threads0)
    torch.backends.mha.set_fastpath_enabled(attention == "fastpath")
    if compile:
        bb.encode_images = torch.compile(bb.forward)  # extract_features calls backbone.encode_images
    try:
        with sdpa_kernel(SDPBackend.MATH) if attention == "math" else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(threads0)
        torch.backends.mha.set_fastpath_enabled(fastpath0)
        bb.__dict__.pop("encode_images", None)


@torch.no_grad()
def one_image_loop(items, bb) -> dict[str, np.ndarray]:
    "The baseline, peer code's loop: per image read, preprocess, one forward with a batch of 1, copy to the host."
    out = {k: [] for k in KEYS}
    for _, path in items:
        f = bb.encode_images(bb.preprocess(read_image(path))[None])
        for k in KEYS:
            out[k].append(f[k].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def pipeline(items, bb, cache_dir, **feature_config) -> FeatureCache:
    "The package's extraction, `bacgcn.features.extract_features`, from the files into a fresh fp16 cache."
    return extract_features(items, bb, cache_dir, FeatureConfig(**feature_config), progress=False, overwrite=True)


def warm_up(bb, items, cache_dir, fc: dict, full_batch: bool = False) -> float:
    """Untimed first calls: a full batch through `encode_images` where shapes matter (CUDA, torch.compile), and one
    image through the pipeline (loader, writer, one-image shapes). Returns the first call's seconds (compilation)."""
    S, dev = bb.image_size, bb.device
    n = fc["batch_size"] if full_batch or dev.type == "cuda" else 1
    first, _, _ = timed(lambda: bb.encode_images(torch.zeros(n, 3, S, S, dtype=torch.uint8, device=dev)), dev)
    pipeline(items[:1], bb, cache_dir, **fc)
    return first


def cosines(a: np.ndarray, b: np.ndarray) -> dict:
    "min and mean cosine between the vectors (last axis) of `a` and `b`: over images, and over patches for patches."
    a, b = a.astype(np.float64), b.astype(np.float64)
    c = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return dict(min=float(c.min()), mean=float(c.mean()))


def bench_extract(out_dir=OUT, *, device="auto", clip=None, images=16, baseline=4, batch_size=8, workers=1,
                  maskings=MASKINGS, precisions: list | None = None, decode: str | None = None, settings=True,
                  settings_images=8, repeats=1, work_dir: str | None = None) -> dict:
    """img/s and GFLOP per image of each masking reading (`maskings`) at each precision (`precisions`; default: those
    the device runs natively) from the same `images` JPEG files (COCO-like sizes), against the one-image loop of the
    same backbone on the first `baseline` of them; int8's cosine to fp32; `decode` pil (CPU) or torchvision (CUDA);
    then, on `settings_images`, one setting changed at a time (`settings`). `repeats`: interleaved, fastest kept."""
    dev = resolve_device(device)
    decode, precisions = decode or ("torchvision" if dev.type == "cuda" else "pil"), precisions or precisions_for(dev)
    fc = dict(batch_size=batch_size, num_workers=workers, decode=decode)
    res = dict(kind="extract", **machine(dev), clip={**VIT_B16, **(clip or {})}, images=images, baseline=baseline,
               **fc, repeats=repeats, jpeg_sizes=COCO_SIZES, rows=[])
    gflop, fp32 = {}, {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        items, cache_dir = write_jpegs(Path(tmp) / "jpg", max(images, baseline, settings_images)), Path(tmp) / "c"
        if settings:
            res["settings"] = extract_settings(items[:settings_images], clip, dev, fc, repeats, cache_dir)
        for masking in maskings:
            for precision in precisions:
                bb = backbone(clip, masking, precision, dev)
                row = dict(masking=bb.config.reading, precision=bb.precision, weights_sha256=bb.weights_sha256)
                if precision != "int8":  # the counter does not see quantized kernels; int8 does the same arithmetic
                    gflop.setdefault("plain forward", flops_per_image(bb, "global"))
                    gflop.setdefault(row["masking"], flops_per_image(bb))
                warm_up(bb, items, cache_dir, fc)
                base, pipe = [], []
                for _ in range(repeats):  # interleaved, so that both see the same load; the fastest is kept
                    base.append(timed(lambda: one_image_loop(items[:baseline], bb), dev))
                    pipe.append(timed(lambda: pipeline(items[:images], bb, cache_dir, **fc), dev))
                (bw, bc, ref), (pw, pc, cache) = min(base, key=lambda r: r[0]), min(pipe, key=lambda r: r[0])
                agree = {k: float(np.abs(cache.read(k, np.arange(baseline)) - ref[k]).max()) for k in KEYS}
                row.update(images_per_s=images / pw, cpu_s_per_image=pc / images, seconds_all=[p[0] for p in pipe],
                           baseline_images_per_s=baseline / bw, baseline_cpu_s_per_image=bc / baseline,
                           baseline_seconds_all=[b[0] for b in base], agreement_max_abs=agree, loadavg=loadavg())
                row.update(speedup=row["images_per_s"] / row["baseline_images_per_s"],
                           speedup_cpu_time=row["baseline_cpu_s_per_image"] / row["cpu_s_per_image"])
                feats = {k: cache.read(k, np.arange(images)) for k in FEATURE_KEYS}
                if precision == "fp32":
                    fp32[masking] = feats
                elif precision == "int8" and masking in fp32:
                    row["cosine_to_fp32"] = {k: cosines(feats[k], fp32[masking][k]) for k in FEATURE_KEYS}
                res["rows"].append(row)
    res["gflop"] = gflop
    for r in res["rows"]:
        f = gflop.get(r["masking"])
        r.update(gflop=f and f["gflop"], x_plain_forward=f and f["gflop"] / gflop["plain forward"]["gflop"])
        pixel = [q for q in res["rows"] if q["masking"].startswith("pixel") and q["precision"] == r["precision"]]
        if pixel:
            r.update(vs_pixel=r["images_per_s"] / pixel[0]["images_per_s"],
                     vs_pixel_cpu_time=pixel[0]["cpu_s_per_image"] / r["cpu_s_per_image"])
    res["goal"] = goal(res["rows"], dev.type)
    return save(res, out_dir)


def goal(rows: list, device_type: str) -> dict:
    "The goals: on a CPU attention >= 2.5x pixel in img/s; on a GPU >= 3,000 img/s and >= 15x the loop."
    att = [r for r in rows if r["masking"].startswith("attention")]
    if device_type == "cuda":
        best = max(att, key=lambda r: r["images_per_s"], default={})
        return dict(want="attention >= 3000 img/s and >= 15x the one-image loop", images_per_s=best.get("images_per_s"),
                    speedup=best.get("speedup"), met=best.get("images_per_s", 0) >= 3000 and best["speedup"] >= 15)
    got = {r["precision"]: r["vs_pixel"] for r in att if "vs_pixel" in r}
    return dict(want="attention >= 2.5x pixel in img/s, same precision", attention_vs_pixel=got,
                met={p: v >= 2.5 for p, v in got.items()})


def extract_settings(items, clip, dev, fc: dict, repeats: int, cache_dir) -> dict:
    """img/s of the attention reading's pipeline with one setting changed at a time: torch threads, DataLoader workers,
    attention kernel, torch.compile, batch size (and PIL decoding on CUDA); interleaved rounds, the fastest kept."""
    bb = backbone(clip, "attention", precisions_for(dev)[0], dev)
    threads = {1, max(1, len(os.sched_getaffinity(0)) // 2)} if dev.type == "cpu" else set()
    variants = {"default": {}, **{f"threads={t}": {"threads": t} for t in threads if t != torch.get_num_threads()},
                **{f"num_workers={w}": {"num_workers": w} for w in (0, 1, 2) if w != fc["num_workers"]},
                **{f"attention={a}": {"attention": a} for a in ("sdpa", "math")}, "compile": {"compile": True},
                **{f"batch_size={b}": {"batch_size": b} for b in (max(1, fc["batch_size"] // 2), 2 * fc["batch_size"])},
                **({"decode=pil": {"decode": "pil"}} if dev.type == "cuda" else {})}  # fmt: skip
    n, out = len(items), {}
    for _ in range(repeats):
        for name, v in variants.items():
            f = {**fc, **{k: v[k] for k in ("num_workers", "batch_size", "decode") if k in v}}
            try:
                with speed_settings(bb, v.get("threads"), v.get("attention", "fastpath"), v.get("compile", False)):
                    first = warm_up(bb, items, cache_dir, f, full_batch=v.get("compile", False))
                    wall, cpu, _ = timed(lambda: pipeline(items, bb, cache_dir, **f), dev)
            except Exception as e:  # e.g. torch.compile without a working C++ compiler
                out[name] = dict(error=f"{type(e).__name__}: {str(e)[:200]}")
                continue
            if n / wall > out.get(name, {}).get("images_per_s", 0):
                out[name] = dict(images_per_s=n / wall, cpu_s_per_image=cpu / n, first_call_s=first, loadavg=loadavg())
    for r in out.values():
        if "images_per_s" in r and "images_per_s" in out["default"]:
            r["vs_default"] = r["images_per_s"] / out["default"]["images_per_s"]
    return dict(reading=bb.config.reading, precision=bb.precision, n_images=n, default=fc, variants=out)


# -- training ----------------------------------------------------------------------------------------------------------
def cache_bytes(n_images: int, n_patches: int, embed_dim: int) -> int:
    "Bytes of an fp16 cache of what training reads: patches (N, P, D) and global, g_h, g_hc (N, D)."
    return 2 * n_images * (n_patches + 3) * embed_dim


def check_disk(folder, need: int) -> int:
    "Free bytes under `folder`; a ValueError naming both sizes when fewer than 1.1 x `need`."
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < 1.1 * need:
        raise ValueError(f"{folder}: {free / 1e9:.1f} GB free, the synthetic cache needs {need / 1e9:.1f} GB (+10%); "
                         "pass --cache-dir on a larger disk, or fewer --images")
    return free


def synthetic_cache(cache_dir, n_images: int, n_patches: int = 196, embed_dim: int = 512, seed: int = 0,
                    block: int = 1024, pool: int = 256) -> FeatureCache:
    """A complete fp16 feature cache that `FeatureCache.open` reads, rows drawn from a pool of random unit vectors and
    written `block` rows at a time (memory: one block). One of the same shape already there is reused."""
    cache_dir = Path(cache_dir)
    m = dict(version="synthetic", arrays=list(FEATURE_KEYS), dtype="float16", n_images=n_images, n_patches=n_patches,
             embed_dim=embed_dim, chunk_size=block, seed=seed)
    with contextlib.suppress(FileNotFoundError, ValueError):
        old = FeatureCache.open(cache_dir)
        if all(old.manifest.get(k) == v for k, v in m.items()) and old.complete:
            return old
    check_disk(cache_dir, cache_bytes(n_images, n_patches, embed_dim))
    rng = np.random.default_rng(seed)
    shapes = {"patches": (n_patches, embed_dim), "global": (embed_dim,), "g_h": (embed_dim,), "g_hc": (embed_dim,)}
    pools = {k: rng.standard_normal((pool, *s), dtype=np.float32) for k, s in shapes.items()}
    pools = {k: (p / np.linalg.norm(p, axis=-1, keepdims=True)).astype(np.float16) for k, p in pools.items()}
    for k, s in shapes.items():  # .npy header + a sparse file of the full size
        np.lib.format.open_memmap(cache_dir / f"{k}.npy", mode="w+", dtype=np.float16, shape=(n_images, *s)).flush()
    files = {k: NpyFile(cache_dir / f"{k}.npy", writable=True) for k in shapes}
    for s in range(0, n_images, block):
        rows = np.arange(s, min(s + block, n_images))
        pick = rng.integers(0, pool, len(rows))
        for k, f in files.items():
            f.write(rows, pools[k][pick])
    for f in files.values():
        f.close()
    write_json_atomic(cache_dir / "chunks-0.json", {"done": list(range(math.ceil(n_images / block))), "failed": {}})
    write_json_atomic(cache_dir / MANIFEST, {**m, "image_ids": [f"syn{i:07d}" for i in range(n_images)]})
    return FeatureCache.open(cache_dir)


def train_model(embed_dim: int, n_patches: int, n_classes: int = 80, n_backgrounds: int = 24, seed: int = 0) -> BACGCN:
    "BAC-GCN (paper settings) over random category embeddings and a random co-occurrence graph; COCO's K = 80 + 24."
    g, K = torch.Generator().manual_seed(seed), n_classes + n_backgrounds
    text = torch.nn.functional.normalize(torch.randn(K, embed_dim, generator=g), dim=-1)  # K, D
    hard = (torch.rand(512, K, generator=g) < 0.1).double().numpy()  # pseudo labels for the graph
    adj = clip_gcn_adjacency(hard.sum(0), hard.T @ hard, n_classes=n_classes, n_global=2)
    torch.manual_seed(seed)
    return BACGCN(text, adj, categories=[f"c{k}" for k in range(K)], n_classes=n_classes,
                  config=ModelConfig(top_k=min(8, n_patches)))


def time_epoch(cache: FeatureCache, *, device="cpu", batch_size: int = 64, batches: int | None = None,
               seed: int = 0, cold: bool = True) -> dict:
    """`Trainer.train_epoch` over `batches` random batches of `cache` (every row if None): time, peak RSS, and the
    same reads without the model (data share); `cold`: the cache's pages evicted before each pass."""
    dev, N, rng = torch.device(device), cache.n, np.random.default_rng(seed)
    rows = np.arange(N) if batches is None else np.sort(rng.choice(N, min(N, batches * batch_size), replace=False))
    K, m = 104, cache.manifest
    targets = lambda n: (rng.random((n, K)) < 0.1).astype(np.float32)  # n, K
    seg = lambda r: TrainingSet([Segment(cache, r, targets(len(r)), np.ones((len(r), K), np.float32))])
    paths = [cache.path / f"{k}.npy" for k in FEATURE_KEYS]
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=2, reso=False, batch_size=batch_size, device=str(dev))
        model = train_model(m["embed_dim"], m["n_patches"], seed=seed)
        trainer = Trainer(model, seg(rows[: 2 * batch_size]), cfg, out, progress=False)
        trainer.train_epoch(1)  # warm-up: allocator, first kernels
        trainer.train_set = ts = seg(rows)
        if cold:
            drop_page_cache(paths)
        start, scope = rss_gb("VmRSS"), "epoch" if reset_peak_rss() else "process"
        wall, cpu, _ = timed(lambda: trainer.train_epoch(2), dev)
        peak = rss_gb("VmHWM")
    if cold:
        drop_page_cache(paths)
    order = rng.permutation(len(rows))
    data, _, _ = timed(lambda: [ts.batch(order[i : i + batch_size], dev) for i in range(0, len(rows), batch_size)], dev)
    return dict(n_rows=len(rows), seconds=wall, cpu_seconds=cpu, rows_per_s=len(rows) / wall, partial=len(rows) < N,
                epoch_s=wall * N / len(rows), cpu_epoch_s=cpu * N / len(rows), peak_rss_gb=peak, rss_start_gb=start,
                peak_rss_scope=scope, data_seconds=data, data_share=data / wall, cold=cold)


def bench_train(out_dir=OUT, *, device="auto", images=82081, patches=196, dim=512, batch_size=64,
                batches: int | None = None, cache_dir: str | None = None, keep_cache=False, cold=True, seed=0) -> dict:
    """Epoch time and peak RSS of training on an `images` x `patches` x `dim` fp16 cache (COCO train2014 at 224 px by
    default) read through `FeatureCache` (pread); `batches` random batches extrapolated to the epoch, or all of it."""
    dev = resolve_device(device)
    cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / f"bacgcn-bench-{images}x{patches}x{dim}")
    res = dict(kind="train", **machine(dev), images=images, patches=patches, dim=dim,
               cache_gb=cache_bytes(images, patches, dim) / 1e9, cache_dir=str(cache_dir),
               reader="bacgcn.features.FeatureCache (NpyFile, pread)", batch_size=batch_size, batches=batches,
               categories=dict(classes=80, backgrounds=24), memory_gb=os.sysconf("SC_PHYS_PAGES")
               * os.sysconf("SC_PAGE_SIZE") / 1e9)  # fmt: skip
    existed = (cache_dir / MANIFEST).exists()
    try:
        wall, _, cache = timed(lambda: synthetic_cache(cache_dir, images, patches, dim, seed))
        res.update(seconds_to_write_cache=wall, cache_reused=existed)
        res.update(time_epoch(cache, device=dev, batch_size=batch_size, batches=batches, seed=seed, cold=cold))
    finally:
        if not keep_cache and not existed:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return save(res, out_dir)


# -- growth ------------------------------------------------------------------------------------------------------------
def bench_growth(out_dir=OUT, *, device="auto", clip=None, masking="attention", precision: str | None = None,
                 scales=(1, 2, 4), sizes=(224, 448), images=8, train_images=1024, batch_size=8, workers=1,
                 decode: str | None = None, train_batch_size=64, work_dir: str | None = None) -> dict:
    """Extraction (`images` JPEG files into a fresh cache, reading `masking` at `precision`: fp32 on a CPU, fp16 on
    CUDA) and whole-epoch time (`train_images` synthetic rows) at `scales` x these counts at the first of `sizes` and
    at 1x at the others; `relative`: over the first size's 1x time, `per_image_relative` per image."""
    dev = resolve_device(device)
    precision = precision or precisions_for(dev)[0]
    decode = decode or ("torchvision" if dev.type == "cuda" else "pil")
    fc = dict(batch_size=batch_size, num_workers=workers, decode=decode)
    res = dict(kind="growth", **machine(dev), clip={**VIT_B16, **(clip or {})}, masking=masking, precision=precision,
               scales=list(scales), sizes=list(sizes), **fc, rows=[])
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp = Path(tmp)
        items = write_jpegs(tmp / "jpg", images * max(scales))
        for size in sizes:
            bb = backbone({**(clip or {}), "image_size": size}, masking, precision, dev)
            warm_up(bb, items, tmp / "cache", fc)
            for s in scales if size == sizes[0] else scales[:1]:
                wall, cpu, _ = timed(lambda: pipeline(items[: images * s], bb, tmp / "cache", **fc), dev)
                row = dict(image_size=size, scale=s)
                res["rows"].append(dict(stage="extract", **row, n_images=images * s, seconds=wall, cpu_seconds=cpu))
                cache = synthetic_cache(tmp / "train", train_images * s, bb.n_patches, bb.embed_dim)
                r = time_epoch(cache, device=dev, batch_size=train_batch_size, cold=False)
                res["rows"].append(dict(stage="train_epoch", **row, n_images=cache.n, seconds=r["seconds"],
                                        cpu_seconds=r["cpu_seconds"]))  # fmt: skip
                shutil.rmtree(cache.path)
    for r in res["rows"]:
        b = next(q for q in res["rows"] if q["stage"] == r["stage"])
        per_image = b["n_images"] / r["n_images"]
        r.update(relative=r["seconds"] / b["seconds"], per_image_relative=r["seconds"] / b["seconds"] * per_image,
                 cpu_per_image_relative=r["cpu_seconds"] / b["cpu_seconds"] * per_image)
    return save(res, out_dir)


# -- tables and the command line ---------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in [header, *rows]]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in cells)


def table(res: dict) -> str:
    "A result as readable text."
    head = f"{res['kind']} on {res['device']} ({res['torch_threads']} threads, flags {' '.join(res['cpu_flags'])})" \
           f", load average {res['loadavg_start']} -> {res.get('loadavg_end')}"  # fmt: skip
    if res["kind"] == "train":
        size = f"{res['images']} x {res['patches']} x {res['dim']} fp16 ({res['cache_gb']:.1f} GB)"
        read = f"{res['n_rows']} rows read{' (partial)' * res['partial']} in {res['seconds']:.1f} s"
        return f"{head}\n{size}, {read}, epoch {res['epoch_s']:.0f} s, data share {res['data_share']:.2f}, " \
               f"peak RSS {res['peak_rss_gb']:.2f} GB"
    if res["kind"] == "growth":
        keys = ["stage", "image_size", "scale", "n_images", "seconds", "relative", "per_image_relative"]
        return "\n".join([head, _table(keys, [[r[k] for k in keys] for r in res["rows"]])])
    cos = lambda r: " ".join(f"{k} {v['min']:.4f}/{v['mean']:.4f}" for k, v in r.get("cosine_to_fp32", {}).items())
    rows = [[r["masking"], r["precision"], r["gflop"] or "-", r["images_per_s"], r["baseline_images_per_s"],
             r["speedup"], r["cpu_s_per_image"], r.get("vs_pixel", "-"), cos(r)] for r in res["rows"]]  # fmt: skip
    out = [head, _table(["reading", "precision", "GFLOP/img", "img/s", "loop img/s", "x loop", "CPU s/img", "x pixel",
                         "int8 cosine to fp32 min/mean"], rows), f"goal: {res['goal']}"]  # fmt: skip
    if "settings" in res:
        v = res["settings"]["variants"]
        out += [f"settings ({res['settings']['reading']}, one change from {res['settings']['default']}):",
                _table(["setting", "img/s", "vs default", "CPU s/img", "first call s"],
                       [[k, r.get("images_per_s", r.get("error")), r.get("vs_default", "-"),
                         r.get("cpu_s_per_image", "-"), r.get("first_call_s", "-")] for k, r in v.items()])]
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    "One option per keyword argument of bench_<what> (--batch-size for batch_size); not given: the function's default."
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for what in ("extract", "train", "growth"):
        fn = globals()[f"bench_{what}"]
        q = sub.add_parser(what, description=fn.__doc__, argument_default=argparse.SUPPRESS)
        q.add_argument("--out", default=str(OUT), help="folder of the JSON result; 'none': write nothing")
        q.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
        for name, par in list(inspect.signature(fn).parameters.items())[1:]:
            d, flag, kind = par.default, "--" + name.replace("_", "-"), str(par.annotation)
            hlp = "default: " + (",".join(map(str, d)) if isinstance(d, tuple) else str(d) if d is not None else "auto")
            if isinstance(d, bool):
                q.add_argument(flag, action=argparse.BooleanOptionalAction, help=hlp)
            elif isinstance(d, tuple) or "list" in kind:
                item = type(d[0]) if d else str
                q.add_argument(flag, type=lambda s, t=item: [t(v) for v in s.split(",")], help=f"a,b,... {hlp}")
            elif name != "clip":
                q.add_argument(flag, type=int if isinstance(d, int) or "int" in kind else str, help=hlp)
            else:  # the CLIP: an open_clip architecture with random weights
                q.add_argument("--model", default=VIT_B16["model_name"], help=f"default: {VIT_B16['model_name']}")
        if what == "extract":
            q.add_argument("--image-size", type=int, default=224, help="default: 224")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    "`python benchmarks/bench.py extract|train|growth [options]` (or `bacgcn bench ...`): run, write, print."
    kw = vars(parse_args(argv))
    what, out, threads = kw.pop("what"), kw.pop("out"), kw.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    if what != "train":
        kw["clip"] = dict(model_name=kw.pop("model"), image_size=kw.pop("image_size", None))
    res = globals()[f"bench_{what}"](None if out.lower() == "none" else out, **kw)
    print(table(res), flush=True)
    return res


if __name__ == "__main__":
    main()
