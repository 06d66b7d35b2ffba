"""The built-in synthetic benchmark (bacgcn.synth) and the shipped tiny CLIP (bacgcn.tinyclip).

Checked against independent recomputation: split files parsed by hand, pixel colours inside boxes,
empirical frequencies against the documented prior, scikit-learn's average precision."""
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bacgcn.captions import CaptionConfig, CaptionFilter
from bacgcn.config import as_config
from bacgcn.synth import (AFFINITY, BACKGROUNDS, CLASSES, KEY_COLOUR, SimCaptionerConfig, SynthConfig, affinity_matrix,
                          image_id, make_benchmark, make_scene, mention_rates, read_boxes, simulate_captions, size_bucket,
                          synth_vocab, write_captions)
from bacgcn.vocab import load_vocab

SMALL = {"n_train": 40, "n_val": 8, "n_test": 20}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    return d, make_benchmark(d, SMALL)


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(None, "train", i) for i in range(400)]


# ---------------------------------------------------------------- determinism

def test_scene_deterministic_by_seed():
    a, b = make_scene({"seed": 3}, "val", 11), make_scene({"seed": 3}, "val", 11)
    assert a.image.tobytes() == b.image.tobytes() and a.instances == b.instances
    assert make_scene({"seed": 4}, "val", 11).image.tobytes() != a.image.tobytes()
    assert make_scene({"seed": 3}, "test", 11).image.tobytes() != a.image.tobytes()


def test_benchmark_files_identical_bytes(bench, tmp_path):
    d, _ = bench
    make_benchmark(tmp_path, SMALL)
    files = sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for f in files:
        assert (d / f).read_bytes() == (tmp_path / f).read_bytes(), f


# ---------------------------------------------------------------- world statistics

def test_boat_mostly_on_water_and_hard_priors(scenes):
    has = lambda s, c: CLASSES.index(c) in s.labels
    bg = lambda s, b: BACKGROUNDS.index(b) in s.backgrounds
    boats = [bg(s, "water") for s in scenes if has(s, "boat")]
    assert len(boats) > 20 and np.mean(boats) > 0.8
    assert all(bg(s, "snow") for s in scenes if has(s, "skis"))
    assert all(bg(s, "wall") for s in scenes if has(s, "clock"))
    # flying things are the only objects anchored in the sky
    sky = BACKGROUNDS.index("sky")
    assert {CLASSES[o.cls] for s in scenes for o in s.instances if o.background == sky} <= {"bird", "airplane", "kite"}


def test_class_given_background_follows_the_table():
    # one-object scenes: the class is drawn from its region's column of the table (no repeat of an earlier class)
    inst = [s.instances[0] for s in (make_scene(None, "train", i) for i in range(1500)) if len(s.instances) == 1]
    A, tested = np.array([AFFINITY[c] for c in CLASSES], dtype=float), 0
    for b, name in enumerate(BACKGROUNDS):
        got = Counter(o.cls for o in inst if o.background == b)
        n = sum(got.values())
        if n < 60: continue
        emp, p = np.array([got[c] for c in range(len(CLASSES))]) / n, A[:, b] / A[:, b].sum()
        assert (np.abs(emp - p) <= 4 * np.sqrt(p * (1 - p) / n)).all(), (name, emp, p)     # 4 binomial sigmas; 0 is 0
        tested += 1
    assert tested >= 5 and np.array_equal(affinity_matrix(), A)


def test_small_object_share(scenes):
    sizes = np.array([max(o.box[2] - o.box[0], o.box[3] - o.box[1]) / 64 for s in scenes for o in s.instances])
    small, medium = np.mean(sizes < 1 / 8), np.mean((sizes >= 1 / 8) & (sizes < 1 / 4))
    assert 0.33 <= small <= 0.50, small            # COCO: 41 %
    assert medium >= 0.15 and 1 - small - medium >= 0.2
    assert sizes.min() >= 2 / 64 and sizes.max() <= 0.6 + 1 / 64
    buckets = Counter(size_bucket(o.box, 64) for s in scenes for o in s.instances)
    assert buckets["small"] == int((sizes < 1 / 8).sum())
    counts = Counter(len(s.instances) for s in scenes)
    assert set(counts) <= {1, 2, 3, 4} and counts[1] > counts[4]


# ---------------------------------------------------------------- boxes against pixels

def _near(img, colour, tol):
    return np.abs(img.astype(int) - np.array(colour)).max(-1) <= tol


def test_boxes_inside_image_and_contain_their_sprite(scenes):
    for s in scenes[:250]:
        H, W, _ = s.image.shape
        for o in s.instances:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
            assert _near(s.image[y0:y1, x0:x1], KEY_COLOUR[CLASSES[o.cls]], 30).any(), (CLASSES[o.cls], o.box)


def test_distinctive_colours_only_inside_their_boxes(scenes):
    # colours used by no background texture: their pixels must lie in that class's boxes
    for name in ["car", "skis", "kite", "bus", "umbrella", "surfboard", "bicycle", "boat"]:
        c, inside, total = CLASSES.index(name), 0, 0
        for s in scenes:
            mask = _near(s.image, KEY_COLOUR[name], 18)
            box_mask = np.zeros(mask.shape, bool)
            for o in s.instances:
                if o.cls == c: box_mask[o.box[1]:o.box[3], o.box[0]:o.box[2]] = True
            inside += (mask & box_mask).sum(); total += mask.sum()
        assert total > 50 and inside / total > 0.99, (name, inside, total)


def test_render_size_configurable():
    s = make_scene({"image_size": 128}, "test", 5)
    assert s.image.shape == (128, 128, 3)
    assert all(o.box[2] <= 128 and o.box[3] <= 128 for o in s.instances)


# ---------------------------------------------------------------- split files

def test_split_files_readable(bench):
    d, manifest = bench
    for split, n in (("train", 40), ("val", 8), ("test", 20)):
        lines = (d / f"{split}_cls.txt").read_text().splitlines()
        boxes = json.loads((d / f"{split}_boxes.json").read_text())
        meta = json.loads((d / f"{split}_scenes.json").read_text())
        assert len(lines) == n == manifest["splits"][split]["n_images"] and len(boxes) == n == len(meta)
        for i, line in enumerate(lines):
            sid, *idx = line.split()
            assert sid == image_id(split, i) and (d / "images" / f"{sid}.png").is_file()
            idx = [int(x) for x in idx]
            assert idx and idx == sorted(set(idx)) and all(0 <= k < len(CLASSES) for k in idx)
            assert idx == sorted({b[0] for b in boxes[sid]})                   # labels = classes of the boxes
            assert set(meta[sid]["backgrounds"]) <= set(BACKGROUNDS)
            with Image.open(d / "images" / f"{sid}.png") as im:
                assert im.size == (64, 64) and im.mode == "RGB"
    assert read_boxes(d / "test_boxes.json")["test_00003"] == [(o.cls, o.box) for o in make_scene(None, "test", 3).instances]


def test_split_files_through_project_readers(bench):
    d, _ = bench
    from bacgcn import data
    ds = data.read_label_list(d / "test_cls.txt", CLASSES, image_root=d / "images", ext=".png")
    assert len(ds) == 20 and ds.labels.shape == (20, len(CLASSES))
    assert all(Path(p).is_file() for p in ds.image_paths)
    assert sorted(np.flatnonzero(ds.labels[3] == 1).tolist()) == make_scene(None, "test", 3).labels


def test_vocabulary_files(bench):
    d, _ = bench
    v = load_vocab(d / "synth.json")
    assert v == synth_vocab() and (v.n_classes, v.n_backgrounds) == (14, 7) and v.classes == CLASSES
    shipped = Path(__file__).resolve().parents[1] / "bacgcn" / "vocabs" / "synth.json"
    assert json.loads(shipped.read_text()) == synth_vocab().to_dict()
    # every phrase the captioner may write maps back to its category through the package's caption filter
    naive = CaptionFilter(v, CaptionConfig.naive())
    for c in v.categories:
        for w in v.synonyms[c]:
            assert naive.mentioned_names(f"a photo of {w} here") == [c], (c, w)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown SynthConfig fields"): as_config(SynthConfig, {"n_trian": 1})
    with pytest.raises(ValueError, match="size_range"): SynthConfig(size_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="image_size"): SynthConfig(image_size=8)
    with pytest.raises(KeyError, match="unknown stream"): make_scene(None, "trainval", 0)
    with pytest.raises(ValueError, match="unknown SimCaptionerConfig fields"): as_config(SimCaptionerConfig, {"p_echo": 1})
    with pytest.raises(ValueError, match="one rate per prompt"): SimCaptionerConfig(background_rate=(1.0,))
    with pytest.raises(ValueError, match=r"noise: unknown \['p_echo'\]"): SimCaptionerConfig(noise={"p_echo": 1})


def test_read_boxes_bad_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="a.json"): read_boxes(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"img": [[1, 0, 0, 3]]}')
    with pytest.raises(ValueError, match="entry 'img'"): read_boxes(tmp_path / "b.json")


# ---------------------------------------------------------------- captioner

def test_caption_files_format(bench):
    d, _ = bench
    caps = json.loads((d / "train_captions.json").read_text())
    recaps = json.loads((d / "train_re_captions.json").read_text())
    assert sorted(caps) == sorted(recaps) == [f"{image_id('train', i)}." for i in range(40)]
    for k in caps:
        assert len(caps[k]) == 6 and len(recaps[k]) == 6
        assert all(isinstance(x, str) and x for x in caps[k] + recaps[k])
    assert not (d / "test_captions.json").exists()
    from bacgcn import captions
    got = captions.read_captions(d / "train_captions.json", d / "train_re_captions.json")
    assert len(got) == 40 and len(got["train_00000"]) == 12


def test_captioner_deterministic(tmp_path):
    items = [(image_id("train", i), make_scene(None, "train", i)) for i in range(20)]
    a = write_captions(items, tmp_path / "a", "x")
    b = write_captions(list(reversed(items)), tmp_path / "b", "x")     # order does not matter
    for p, q in zip(a, b):
        assert json.loads(p.read_text()) == json.loads(q.read_text())
    s = items[0][1]
    assert simulate_captions(s, "train_00000", {"seed": 1}) != simulate_captions(s, "train_00000", {"seed": 2})


def test_large_objects_mentioned_more_than_small():
    r = mention_rates(200)
    assert r["large"] > 0.85 and r["large"] > r["medium"] + 0.05 and r["medium"] > r["small"] + 0.2
    assert r["absent"] < 0.06


def test_echo_noise_and_synonyms():
    strings = [simulate_captions(make_scene(None, "train", i), image_id("train", i)) for i in range(200)]
    recaps = [r for _, rr in strings for r in rr]
    excl = np.mean([any("excluding" in r for r in rr) for _, rr in strings])
    assert 0.15 < excl < 0.6, excl
    assert any(re.match(r"^[a-z ]+\.  Question: What objects are present in this image, excluding [a-z ]+\? Answer: ", r) for r in recaps)
    assert any(r.startswith("The background of this image, excluding ") for r in recaps)
    words = " ".join(c for cc, rr in strings for c in cc + rr).lower()
    assert re.search(r"\b(two|several|some|three) [a-z]+s\b", words) and re.search(r"\b(sailboat|seagull|bike|plane)s?\b", words)


# ---------------------------------------------------------------- shipped tiny CLIP

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "bacgcn" / "assets"


def _trainer():
    "tools/train_tinyclip.py, imported from its path (tools/ is not a package)."
    import importlib.util
    import sys
    if "train_tinyclip" not in sys.modules:
        spec = importlib.util.spec_from_file_location("train_tinyclip", REPO / "tools" / "train_tinyclip.py")
        sys.modules["train_tinyclip"] = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return sys.modules["train_tinyclip"]


def test_shipped_checkpoint_files():
    cfg = json.loads((ASSETS / "tinyclip_config.json").read_text())
    assert set(cfg) == {"embed_dim", "vision_cfg", "text_cfg"} and cfg["text_cfg"]["vocab_size"] == 49408
    w = ASSETS / "tinyclip.safetensors"
    assert w.stat().st_size <= 5 * 1024 * 1024
    from safetensors.torch import load_file
    sd = load_file(str(w))
    assert all(v.dtype == torch.float16 for k, v in sd.items() if k != "token_embedding.ids")
    card = json.loads((ASSETS / "tinyclip_card.json").read_text())
    assert card["open_clip_config"] == cfg and card["command"]
    tr = _trainer()
    arch = {k: v for k, v in card["training"]["config"].items() if k in tr.TinyClipConfig.__dataclass_fields__ and k != "alt_text"}
    assert cfg == tr.open_clip_config(arch)                                   # the trainer builds this architecture


def test_shipped_checkpoint_loads_into_open_clip_and_beats_chance(tmp_path):
    import open_clip
    from safetensors.torch import load_file
    from sklearn.metrics import average_precision_score
    from bacgcn.clip import read_state_dict
    # register the shipped config with open_clip and build the model the way open_clip does
    (tmp_path / "bacgcn-tinyclip.json").write_text((ASSETS / "tinyclip_config.json").read_text())
    open_clip.add_model_config(tmp_path / "bacgcn-tinyclip.json")
    model = open_clip.create_model("bacgcn-tinyclip", pretrained=None).eval()
    sd = load_file(str(ASSETS / "tinyclip.safetensors"))
    full = read_state_dict(ASSETS / "tinyclip.safetensors")
    missing, unexpected = model.load_state_dict(full, strict=True)
    assert not missing and not unexpected
    ids = sd["token_embedding.ids"].long()
    kept = torch.zeros(49408, dtype=torch.bool); kept[ids] = True
    assert torch.equal(full["token_embedding.weight"][ids], sd["token_embedding.rows"])
    assert not full["token_embedding.weight"][~kept].any()                   # dropped rows are zero
    tok = open_clip.get_tokenizer("bacgcn-tinyclip")
    vocab = synth_vocab()
    scenes = [make_scene(None, 777, i) for i in range(64)]                        # a stream nobody trained on
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)) / torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.stack([torch.nn.functional.normalize(model.encode_text(tok(vocab.prompts(c))), dim=-1).mean(0) for c in CLASSES])
    scores = (img @ torch.nn.functional.normalize(txt, dim=-1).T).numpy()
    Y = np.zeros((64, len(CLASSES)), int)
    for i, s in enumerate(scenes): Y[i, s.labels] = 1
    aps = [average_precision_score(Y[:, c], scores[:, c]) for c in range(len(CLASSES)) if Y[:, c].any()]
    chance = np.mean([Y[:, c].mean() for c in range(len(CLASSES)) if Y[:, c].any()])
    assert np.mean(aps) > max(0.5, 2 * chance), (np.mean(aps), chance)
    # the package's zero-shot scores are these cosines
    from bacgcn.tinyclip import zero_shot_scores
    got = zero_shot_scores(model, tok, np.stack([s.image for s in scenes]))
    np.testing.assert_allclose(got[:, :len(CLASSES)], scores, atol=1e-5)


# ---------------------------------------------------------------- world diagnostics

def test_diagnostics_by_hand():
    """Three scenes, scores chosen so that every number is worked out on paper (sky = the usual background of bird,
    airplane and kite; only bird has positives)."""
    from bacgcn.synth import Instance, Scene
    from bacgcn.tinyclip import diagnose
    img = np.zeros((64, 64, 3), np.uint8)
    bird, cow = CLASSES.index("bird"), CLASSES.index("cow")
    sky, grass = BACKGROUNDS.index("sky"), BACKGROUNDS.index("grass")
    scenes = [Scene(img, [Instance(bird, (0, 0, 12, 6), sky), Instance(cow, (0, 30, 30, 50), grass)], [sky, grass], 20),
              Scene(img, [Instance(bird, (0, 0, 40, 20), sky)], [sky]),
              Scene(img, [Instance(cow, (0, 0, 10, 6), grass)], [grass])]
    K = len(CLASSES) + len(BACKGROUNDS)
    s = np.zeros((3, K)); s[:, bird] = [0.4, 0.9, 0.5]; s[:, cow] = [0.3, 0.1, 0.2]
    s[:, len(CLASSES) + sky] = [0.9, 0.8, 0.1]; s[:, len(CLASSES) + grass] = [0.2, 0.1, 0.9]
    bg = [Scene(img, [], [sky]), Scene(img, [], [grass]), Scene(img, [], [sky, grass], 30)]
    b = np.zeros((3, K)); b[:, bird] = [0.7, 0.65, 0.6]; b[:, cow] = [0.0, 0.25, 0.1]
    d = diagnose(s, scenes, b, bg)
    # bird: positives 0.4 (secondary: cow is larger), 0.9 (prominent); negative 0.5 -> AP (1 + 2/3) / 2
    # cow: positives 0.3 (prominent), 0.2 (prominent, small); negative 0.1 -> AP 1; never secondary
    assert d["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert d["ap_prominent"] == pytest.approx(1.0)             # bird 0.9 > 0.5; cow 0.3, 0.2 > 0.1
    assert d["ap_other"] == pytest.approx(0.5)                 # bird's secondary 0.4 below the negative 0.5
    assert d["prominence_gap"] == pytest.approx(0.5)           # only bird has both kinds of positives
    # bird: threshold median(0.4, 0.9) = 0.65; sky scenes 0.7, 0.6 -> 1/2; the grass-only scene 0.65 -> 1/1
    # cow: threshold median(0.3, 0.2) = 0.25; grass scenes 0.25, 0.1 -> 1/2; the sky-only scene 0.0 -> 0/1
    assert d["bg_fp_by_class"] == {"bird": (0.5, 1.0), "cow": (0.5, 0.0)}
    assert (d["bg_fp"], d["bg_fp_control"]) == pytest.approx((0.5, 0.5))
    # size buckets (small < 8 px, medium < 16 px): bird 12 px (medium, 0.4) and 40 px (large, 0.9), cow 30 px (large,
    # 0.3) and 10 px (medium, 0.2). Large: bird 0.9 > 0.5, cow 0.3 > 0.1. Medium: bird 0.4 < 0.5 (1/2), cow 0.2 > 0.1
    assert (d["ap_large"], d["ap_medium"]) == pytest.approx((1.0, 0.75))
    assert np.isnan(d["ap_small"])                                            # no small positives
    assert d["background_mAP"] == pytest.approx(1.0)


def test_diagnostic_streams_are_disjoint_from_training_and_benchmarks():
    from bacgcn.synth import SPLITS
    from bacgcn.tinyclip import DIAGNOSTIC_SEED, DIAGNOSTIC_STREAMS, TARGETS
    streams = set(DIAGNOSTIC_STREAMS.values())
    assert not streams & (set(SPLITS.values()) | {_trainer().TinyClipConfig.stream})
    assert DIAGNOSTIC_SEED == 0 and all(lo < hi for lo, hi in TARGETS.values())


# ---------------------------------------------------------------- the trainer (tools/train_tinyclip.py)

def test_alt_texts_name_the_largest_object():
    tr = _trainer()
    import open_clip
    tok, vocab = open_clip.SimpleTokenizer(context_length=16), synth_vocab()
    scenes = [make_scene(None, 100, i) for i in range(300)]
    texts = [tr.alt_text(s, np.random.default_rng(i)) for i, s in enumerate(scenes)]
    first = [any(w in t for w in vocab.synonyms[CLASSES[max(s.instances, key=s.size).cls]]) for s, t in zip(scenes, texts)]
    assert 0.75 < np.mean(first) < 0.98, np.mean(first)
    assert max(len(tok.encode(t)) for t in texts) <= 14                   # fits the context with start/end tokens
    assert tr.alt_text(scenes[0], np.random.default_rng(5)) == tr.alt_text(scenes[0], np.random.default_rng(5))
    only_bg = [tr.alt_text(s, np.random.default_rng(i), {"p_background_only": 1.0}) for i, s in enumerate(scenes[:20])]
    assert all(t in {p.format(b) for b in BACKGROUNDS for p in vocab.templates} for t in only_bg)
    # p_context: the text names a usual subject of the main (largest) background, present or not
    ctx = dict(p_context=1.0, p_background_only=0.0, p_template=1.0, p_synonym=0.0)
    absent = []
    for i, s in enumerate(scenes[:200]):
        named = [c for c in CLASSES if tr.alt_text(s, np.random.default_rng(i), ctx).endswith(f" {vocab.prompt_name(c)}.")]
        areas = [1.0] if s.horizon is None else [s.horizon, 64 - s.horizon]
        assert len(named) == 1 and AFFINITY[named[0]][s.backgrounds[int(np.argmax(areas))]] > 0, (named, s.backgrounds)
        absent.append(CLASSES.index(named[0]) not in s.labels)
    assert 0.2 < np.mean(absent) < 0.95


def test_contrastive_loss_by_hand():
    tr = _trainer()
    e = torch.eye(2)
    # two distinct texts, perfect alignment, tau = 1: each direction's CE is log(1 + e^-1)
    assert tr.contrastive_loss(e, e, torch.tensor(0.0), torch.tensor([[1, 2], [3, 4]])).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # identical texts share the target: equal logits give the minimum log 2
    u = torch.nn.functional.normalize(torch.ones(2, 2), dim=1)
    assert tr.contrastive_loss(u, u, torch.tensor(0.0), torch.tensor([[1, 2], [1, 2]])).item() == pytest.approx(math.log(2))
    cfg = tr.TinyClipConfig(steps=200, warmup_steps=10, lr=1.0)
    assert [tr.lr_at(k, cfg) for k in (0, 9, 10, 200)] == pytest.approx([0.1, 1.0, 1.0, 0.0])
    assert tr.lr_at(105, cfg) == pytest.approx(0.5)


TINY = dict(vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1, text_heads=2, embed_dim=32,
            batch_size=32, warmup_steps=2, lr=3e-3, num_workers=0, threads=1)


def test_short_training_lowers_the_loss_on_held_out_pairs():
    tr = _trainer()
    cfg = tr.TinyClipConfig(steps=30, **TINY)
    held = tr.AltTextPairs(tr.TinyClipConfig(**{**TINY, "stream": 555})).batch(0)     # pairs the training never sees

    def loss(model):
        with torch.no_grad():
            x, t = held
            img = torch.nn.functional.normalize(model.encode_image(tr.normalize_images(x)), dim=-1)
            return tr.contrastive_loss(img, torch.nn.functional.normalize(model.encode_text(t), dim=-1), model.logit_scale, t).item()

    import open_clip
    torch.manual_seed(cfg.seed)
    before = loss(open_clip.CLIP(**tr.open_clip_config(cfg)).eval())                 # the same initialisation
    res = tr.train(cfg)
    assert len(res["history"]) == 30 and loss(res["model"]) < before - 0.3, (before, loss(res["model"]))


def test_export_round_trip_and_command_line(tmp_path):
    tr = _trainer()
    from bacgcn.clip import load_clip
    card = tr.main(["--out", str(tmp_path), "--steps", "3", "--threads", "1", "--config", json.dumps({k: v for k, v in TINY.items() if k != "threads"})])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tinyclip.safetensors", "tinyclip_card.json", "tinyclip_config.json"]
    assert card["training"]["steps"] == 3 and card["command"].startswith("python tools/train_tinyclip.py --out")
    d = card["diagnostics"]
    assert set(d["in_range"]) == set(d["targets"]) and 0 <= d["mAP"] <= 1 and d["streams"] == {"scenes": 300, "backgrounds": 301}
    # the reloaded weights equal the fp16-rounded originals
    torch.manual_seed(0)
    cfg = tr.TinyClipConfig(**{k: v for k, v in TINY.items() if k != "threads"})
    import open_clip
    m = open_clip.CLIP(**tr.open_clip_config(cfg)).eval()
    tr.export(m, tmp_path / "rt", tr.open_clip_config(cfg), token_ids=[7, 9])
    bb = load_clip(model_config=str(tmp_path / "rt" / "tinyclip_config.json"), pretrained=str(tmp_path / "rt" / "tinyclip.safetensors"), model_name="t")
    got, want = bb.model.state_dict(), m.state_dict()
    ids = sorted({7, 9} | set(tr.vocab_token_ids()))
    for k, v in want.items():
        if k == "token_embedding.weight":
            dropped = sorted(set(range(v.shape[0])) - set(ids))
            assert torch.equal(got[k][ids], v[ids].half().float()) and not got[k][dropped].any() and len(dropped) > 49000
        else:
            assert torch.equal(got[k], v.half().float()), k
