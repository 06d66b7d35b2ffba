"""BLIP-2 captioner end to end on a tiny random-weight BLIP-2 (tests/tiny_models.py: no download, locally trained
tokenizer): the released two-file format (checked byte for byte against the authors' VOC2007 files,
found as tests/real_data.py says), the re-caption prompts, resume after an interruption, shard + merge, gaps, duplicates,
malformed outputs, missing models, and that transformers stays optional."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers", reason="the captioner tests need the 'caption' extra: pip install 'bacgcn[caption]'")

from bacgcn.captioner import (CAPTION_PROMPTS, RECAPTION_PROMPTS, Blip2Captioner, CaptionerConfig, caption_dataset,
                              caption_images, caption_paths, load_blip2, merge_shards, read_state)
from bacgcn.captions import read_caption_file
from bacgcn.files import write_json_atomic
from bacgcn.vocab import load_vocab
from datasets_fixtures import write_voc
from real_data import real_file
from tiny_models import CATEGORY_WORDS, FILLER, save_tiny_blip2

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "One intra-op thread: on a small, shared CPU, OpenMP's spinning threads make the tiny model ~20x slower."
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


N_IMAGES = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_blip2(tmp_path_factory.mktemp("blip2") / "tiny-blip2")


@pytest.fixture(scope="module")
def captioner(tiny) -> Blip2Captioner:
    return Blip2Captioner(*load_blip2(tiny, device="cpu"), max_new_tokens=6)


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[tuple[str, Path]]:
    "Six small images of different sizes and modes (RGB, grayscale, RGBA), ids like VOC's."
    d, rng, out = tmp_path_factory.mktemp("images"), np.random.default_rng(0), []
    for k in range(N_IMAGES):
        a = rng.integers(0, 256, (20 + 6 * k, 30 + 4 * k, 3), dtype=np.uint8)
        im = Image.fromarray(a).convert(["RGB", "L", "RGBA"][k % 3])
        p = d / f"{k:06d}.png"
        im.save(p)
        out.append((f"{k:06d}", p))
    return out


def config(tiny, **kw) -> dict:
    return dict(model=str(tiny), device="cpu", max_new_tokens=6, batch_size=2, chunk_size=2, vocab="voc2007") | kw


class Counting:
    "Wraps a captioner, records every (prompts) it is asked, and raises after `fail_after` calls."
    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.calls = inner, fail_after, []
    def preprocess(self, images): return self.inner.preprocess(images)
    def generate(self, pixel_values, prompts):
        if self.fail_after is not None and len(self.calls) >= self.fail_after: raise KeyboardInterrupt("simulated kill")
        self.calls.append(list(prompts))
        return self.inner.generate(pixel_values, prompts)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny, items) -> Path:
    "An uninterrupted, unsharded run that loads the model itself from the directory (the path users take)."
    out = tmp_path_factory.mktemp("reference")
    res = caption_images(items, config(tiny), out, "voc2007", progress=False)
    assert res.complete and res.n_captioned == N_IMAGES and res.failed == {}
    return out


def files(out: Path, shard=None) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in caption_paths(out, "voc2007", shard).items() if k != "state"}


# ---------------------------------------------------------------- format and prompts

def test_released_format(reference, items):
    paths = caption_paths(reference, "voc2007")
    ids = [i for i, _ in items]
    for which in ("captions", "re_captions"):
        raw = paths[which].read_text(encoding="utf-8")
        d = json.loads(raw)
        assert list(d) == [i + "." for i in ids]                      # "<image id>." in image order
        assert all(isinstance(v, list) and len(v) == 6 and all(isinstance(s, str) for s in v) for v in d.values())
        assert raw == json.dumps(d) and "\n" not in raw               # one line, json.dump's default separators
    assert paths["captions"].name == "voc2007_captions.json" and paths["re_captions"].name == "voc2007_re_captions.json"
    st = read_state(paths["state"])
    assert st["complete"] and st["image_ids"] == ids and st["caption_prompts"] == list(CAPTION_PROMPTS)
    words = set(CATEGORY_WORDS) | set(FILLER)
    said = {w for v in json.loads(paths["captions"].read_text()).values() for s in v for w in s.split()}
    assert said & words, "the tiny model should say some of its words"


def test_released_files_round_trip(tmp_path):
    "Our writer reproduces the authors' VOC2007 files byte for byte, and our reader accepts them."
    folder = real_file("captions", "voc2007_re_captions.json").parent
    for name in ("voc2007_captions.json", "voc2007_re_captions.json"):
        d = read_caption_file(folder / name)
        assert len(d) == 5011 and all(len(v) == 6 for v in d.values())
        write_json_atomic(tmp_path / name, {k + ".": v for k, v in d.items()}, indent=None)   # how a run writes
        raw = (folder / name).read_text(encoding="utf-8")
        # one place in the released re-captions joins two entries without json.dump's space ('"],"003556."')
        assert raw.count('"],"') <= 1 and (tmp_path / name).read_text(encoding="utf-8") == raw.replace('"],"', '"], "')


def test_greedy_is_deterministic_and_batching_does_not_change_answers(tiny, captioner, items, tmp_path):
    out = caption_images(items, config(tiny, batch_size=3, chunk_size=6), tmp_path, "voc2007", progress=False, captioner=captioner)
    again = caption_images(items, config(tiny, batch_size=1, chunk_size=1), tmp_path / "b", "voc2007", progress=False, captioner=captioner)
    assert out.captions.read_bytes() == again.captions.read_bytes()
    assert out.re_captions.read_bytes() == again.re_captions.read_bytes()
    # left padding: prompts of different lengths in one batch give what each gets alone
    px = captioner.preprocess([read_rgb(p) for _, p in items[:3]])
    prompts = [CAPTION_PROMPTS[0], RECAPTION_PROMPTS[3].format(objects="dog cat sky road"), CAPTION_PROMPTS[4]]
    assert captioner.generate(px, prompts) == [captioner.generate(px[k:k + 1], [q])[0] for k, q in enumerate(prompts)]


def read_rgb(p):
    with Image.open(p) as im: return im.convert("RGB")


class Scripted:
    "A captioner whose first-pass answers are written here (by image width); it records every batch of prompts."
    def __init__(self, answers: dict[int, str]):
        self.answers, self.calls = answers, []
    def preprocess(self, images): return [im.size[0] for im in images]
    def generate(self, widths, prompts):
        self.calls.append(list(prompts))
        return [self.answers[w] if p in CAPTION_PROMPTS else "again" for w, p in zip(widths, prompts)]


def test_recaption_prompts_exclude_the_first_pass_objects(items, tmp_path):
    "Independent reference: the objects of hand-written first-pass answers, named by hand in VOC vocabulary order."
    answers = ["a dog and a man on the grass", "a table with plates of food", "a table with a laptop",
               "A dog. Question: What is in the photo, excluding cat? Answer: a dog", "dog cat car person",
               "a cat in a dog bed near the water"]
    expected = [["dog", "person", "grass"], ["diningtable"], [], ["dog"], [], ["cat", "water"]]
    rec = Scripted({Image.open(p).size[0]: a for (_, p), a in zip(items, answers)})
    res = caption_images(items, dict(batch_size=6, chunk_size=6), tmp_path, "voc2007", progress=False, captioner=rec)
    assert len(rec.calls) == 12                                        # 6 caption + 6 re-caption prompts, one batch
    assert rec.calls[:6] == [[q] * N_IMAGES for q in CAPTION_PROMPTS]
    for b, objs in enumerate(expected):
        want = [t.format(objects=" ".join(objs)) for t in RECAPTION_PROMPTS] if objs else list(CAPTION_PROMPTS)
        assert [rec.calls[6 + j][b] for j in range(6)] == want, b
    assert read_caption_file(res.re_captions)["000000"] == ["again"] * 6
    assert read_state(res.paths["state"])["categories"] == load_vocab("voc2007").categories
    # exclude="none": the second pass asks the first-pass questions again, and no vocabulary is needed
    rec = Scripted(rec.answers)
    res = caption_images(items, dict(exclude="none"), tmp_path / "none", "my_photos", progress=False, captioner=rec)
    assert rec.calls[6:] == rec.calls[:6] and read_state(res.paths["state"])["vocab"] is None


def test_default_exclusion_uses_the_caption_filter(tiny, captioner, items, tmp_path):
    "With the tiny model (whatever it says), the second question excludes what the caption filter finds."
    from bacgcn import captions
    voc, rec = load_vocab("voc2007"), Counting(captioner)
    cfg = {k: v for k, v in config(tiny, batch_size=6, chunk_size=6).items() if k not in ("exclude", "vocab")}
    res = caption_images(items, cfg, tmp_path, "voc2007", progress=False, captioner=rec)
    assert read_state(res.paths["state"])["exclude"] == "filter" and read_state(res.paths["state"])["vocab"] == "voc2007"
    flt, caps = captions.CaptionFilter(voc), read_caption_file(res.captions)
    for b, (i, _) in enumerate(items):
        objs = [voc.categories[k] for k in sorted(set().union(*(flt.mentions(t) for t in caps[i])))]
        want = [t.format(objects=" ".join(objs)) for t in RECAPTION_PROMPTS] if objs else list(CAPTION_PROMPTS)
        assert [rec.calls[6 + j][b] for j in range(6)] == want


def test_output_passes_through_the_caption_filter(reference, items):
    from bacgcn import captions
    paths = caption_paths(reference, "voc2007")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # six and six: the format's counts
        caps = captions.read_captions(paths["captions"], paths["re_captions"])
    assert list(caps) == [i for i, _ in items] and all(len(v) == 12 for v in caps.values())
    pl = captions.pseudo_labels(caps, load_vocab("voc2007"))
    assert list(pl.image_ids) == [i for i, _ in items] and pl.hard.shape == (N_IMAGES, 44)


# ---------------------------------------------------------------- resume, shards, merge

def test_resume_after_interruption(tiny, captioner, items, reference, tmp_path):
    killed = Counting(captioner, fail_after=12)                        # dies at the first call of the second chunk
    with pytest.raises(KeyboardInterrupt):
        caption_images(items, config(tiny), tmp_path, "voc2007", progress=False, captioner=killed)
    half = read_caption_file(caption_paths(tmp_path, "voc2007")["captions"])
    assert list(half) == ["000000", "000001"]
    assert not read_state(caption_paths(tmp_path, "voc2007")["state"])["complete"]
    rerun = Counting(captioner)
    res = caption_images(items, config(tiny), tmp_path, "voc2007", progress=False, captioner=rerun)
    assert len(rerun.calls) == 2 * 12 and res.complete                 # only chunks 2 and 3
    assert files(tmp_path) == files(reference)
    third = Counting(captioner)
    caption_images(items, config(tiny), tmp_path, "voc2007", progress=False, captioner=third)
    assert third.calls == [] and files(tmp_path) == files(reference)


def test_resume_refuses_other_settings(tiny, captioner, items, reference, tmp_path):
    import shutil
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    before = files(tmp_path)
    for kw, what in ((dict(max_new_tokens=9), "max_new_tokens"), (dict(caption_prompts=["Q?"] * 6), "caption_prompts"),
                     (dict(vocab="coco2014"), "vocab"), (dict(model="elsewhere/blip2"), "model")):
        with pytest.raises(ValueError, match=what):
            caption_images(items, config(tiny, **kw), tmp_path, "voc2007", progress=False, captioner=captioner)
    with pytest.raises(ValueError, match="n_total"):
        caption_images(items[:4], config(tiny), tmp_path, "voc2007", progress=False, captioner=captioner)
    assert files(tmp_path) == before


def test_shards_merge_to_the_unsharded_run(tiny, captioner, items, reference, tmp_path):
    for s in range(3):
        res = caption_images(items, config(tiny), tmp_path, "voc2007", shard=f"{s}/3", progress=False, captioner=captioner)
        assert res.n_images == 2 and list(read_caption_file(res.captions)) == [items[s][0], items[s + 3][0]]
    merged = merge_shards(tmp_path, "voc2007", 3, expected_ids=[i for i, _ in items])
    assert merged.complete and files(tmp_path) == files(reference)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        merge_shards(tmp_path, "voc2007", 3)


@pytest.fixture
def shards(tiny, captioner, items, tmp_path) -> Path:
    for s in range(2): caption_images(items, config(tiny), tmp_path, "voc2007", shard=(s, 2), progress=False, captioner=captioner)
    return tmp_path


def _edit(path: Path, fn):
    d = json.loads(path.read_text())
    write_json_atomic(path, fn(d))


def test_merge_detects_a_gap(shards, items):
    p = caption_paths(shards, "voc2007", "1/2")
    for k in ("captions", "re_captions"): _edit(p[k], lambda d: {k2: v for k2, v in d.items() if k2 != "000003."})
    with pytest.raises(ValueError, match=r"gap: 1 images have no captions.*'000003' of shard 1/2"):
        merge_shards(shards, "voc2007", 2)
    assert not caption_paths(shards, "voc2007")["captions"].exists()


def test_merge_detects_a_duplicate(shards):
    p0, p1 = caption_paths(shards, "voc2007", "0/2"), caption_paths(shards, "voc2007", "1/2")
    for k in ("captions", "re_captions"):
        extra = json.loads(p0[k].read_text())["000000."]
        _edit(p1[k], lambda d: {**d, "000000.": extra})
    with pytest.raises(ValueError, match=r"shard-1-of-2.json: 1 ids are not among the 3 images of its run or shard "
                                         r"\(a duplicate of another shard's, or foreign\), e.g. \['000000'\]"):
        merge_shards(shards, "voc2007", 2)


def test_merge_detects_missing_shards_and_ids(shards, items):
    with pytest.raises(FileNotFoundError, match=r"9 of the 9 files of 3 shards are missing.*found: \['voc2007_caption_state.shard-0-of-2.json'"):
        merge_shards(shards, "voc2007", 3)
    with pytest.raises(ValueError, match=r"1 expected ids are in no share \(a gap, e.g. \['999999'\]\)"):
        merge_shards(shards, "voc2007", 2, expected_ids=[i for i, _ in items] + ["999999"])
    with pytest.raises(ValueError, match=r"1 ids are not expected \(e.g. \['000005'\]\)"):
        merge_shards(shards, "voc2007", 2, expected_ids=[i for i, _ in items][:-1])
    caption_paths(shards, "voc2007", "0/2")["re_captions"].unlink()
    with pytest.raises(FileNotFoundError, match=r"voc2007_re_captions.shard-0-of-2.json"):
        merge_shards(shards, "voc2007", 2)


def test_unreadable_image_is_recorded_retried_and_refused_by_merge(tiny, captioner, items, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    its = items[:3] + [("broken", bad)]
    res = caption_images(its, config(tiny), tmp_path / "o", "voc2007", shard="0/1", progress=False, captioner=captioner)
    assert res.n_captioned == 3 and not res.complete and set(res.failed) == {"broken"}
    assert read_state(res.paths["state"])["failed"]["broken"].startswith(("unreadable", "truncated"))
    rerun = Counting(captioner)
    caption_images(its, config(tiny), tmp_path / "o", "voc2007", shard="0/1", progress=False, captioner=rerun)
    assert rerun.calls == []                                           # retried, but it fails in reading, not in the model
    with pytest.raises(ValueError, match=r"1 unreadable.*'broken'.*allow_failed=True"):
        merge_shards(tmp_path / "o", "voc2007", 1)
    merged = merge_shards(tmp_path / "o", "voc2007", 1, allow_failed=True)
    assert merged.n_captioned == 3 and list(merged.failed) == ["broken"]


# ---------------------------------------------------------------- bad input

MALFORMED = {
    "truncated JSON": (b'{"000000.": ["a", "b"', "invalid JSON"),
    "not an object": (b'[["a"]]', "expected a JSON object"),
    "five strings": (b'{"000000.": ["a", "b", "c", "d", "e"]}', "entry '000000.' should be a list of 6 strings"),
    "not UTF-8": ('{"000000.": ["caf\xe9", "b", "c", "d", "e", "f"]}'.encode("latin-1"), "not UTF-8"),
    "duplicate key": (b'{"000000.": ["a","b","c","d","e","f"], "000000.": ["a","b","c","d","e","f"]}', "appears twice"),
    "foreign id": (b'{"123456.": ["a", "b", "c", "d", "e", "f"]}', "1 ids are not among the 6 images of its run"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_existing_output_is_refused_untouched(case, tiny, captioner, items, tmp_path):
    rec = Counting(captioner, fail_after=0)
    caption_images(items[:1], config(tiny), tmp_path / "seed", "voc2007", progress=False, captioner=captioner)
    paths = caption_paths(tmp_path, "voc2007")
    state = json.loads(caption_paths(tmp_path / "seed", "voc2007")["state"].read_text())
    state.update(n_total=N_IMAGES, image_ids=[i for i, _ in items])
    # the state of an interrupted 6-image run, and a bad captions file beside it
    state["ids_sha1"] = hashlib.sha1("\n".join(i for i, _ in items).encode()).hexdigest()
    write_json_atomic(paths["state"], state, indent=1)
    content, message = MALFORMED[case]
    paths["captions"].write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        caption_images(items, config(tiny), tmp_path, "voc2007", progress=False, captioner=rec)
    assert str(paths["captions"]) in str(e.value)
    assert paths["captions"].read_bytes() == content and not paths["re_captions"].exists() and rec.calls == []


def test_captions_without_state_are_refused(tiny, captioner, items, tmp_path):
    p = caption_paths(tmp_path, "voc2007")["captions"]
    p.write_text('{"000000.": ["a", "b", "c", "d", "e", "f"]}')
    with pytest.raises(ValueError, match="state file .* does not"):
        caption_images(items, config(tiny), tmp_path, "voc2007", progress=False, captioner=captioner)
    assert p.read_text() == '{"000000.": ["a", "b", "c", "d", "e", "f"]}'


def test_missing_model_is_named(tmp_path, items, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "models" / "blip2-opt-2.7b"
    with pytest.raises(FileNotFoundError, match="blip2-opt-2.7b") as e:
        load_blip2(missing, device="cpu")
    assert str(missing) in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        load_blip2("nobody/no-such-blip2", device="cpu", cache_dir=tmp_path / "hf-cache")
    assert "nobody/no-such-blip2" in str(e.value) and str(tmp_path / "hf-cache") in str(e.value)
    assert "huggingface-cli download" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_blip2(tmp_path / "empty", device="cpu")
    # caption_images fails on the model before writing anything
    with pytest.raises(FileNotFoundError, match=str(missing)):
        caption_images(items, dict(model=str(missing), device="cpu", exclude="none"), tmp_path / "out", "voc2007", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_config_and_shard():
    with pytest.raises(ValueError, match="exactly one '{objects}'"):
        CaptionerConfig(recaption_prompts=["What is {here}?"] * 6)
    with pytest.raises(ValueError, match="0 <= i < n"):
        caption_paths(".", "voc2007", "2/2")
    with pytest.raises(ValueError, match="no built-in one"):
        caption_images([("a", None)], dict(), ".", "my_photos", progress=False, captioner=object())
    with pytest.raises(ValueError, match="exclude='synonyms': choose 'filter' or 'none'"):
        CaptionerConfig(exclude="synonyms")


# ---------------------------------------------------------------- dataset entry point, optional dependency

def test_caption_dataset_voc_layout(tiny, captioner, tmp_path):
    ann = {f"00000{k}": [("dog", False)] for k in range(1, 4)}
    write_voc(tmp_path / "data", ann, {"trainval": list(ann)})
    res = caption_dataset("voc2007", tmp_path / "data", "trainval", model=tiny, out=tmp_path / "caps",
                          config=dict(device="cpu", max_new_tokens=4), progress=False, captioner=captioner)
    assert res.captions == tmp_path / "caps" / "voc2007_captions.json" and res.complete
    assert list(read_caption_file(res.re_captions)) == ["000001", "000002", "000003"]
    st = read_state(res.paths["state"])
    assert (st["vocab"], st["exclude"]) == ("voc2007", "filter")       # vocabulary from the dataset name


def test_package_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import bacgcn.captioner, bacgcn.data, bacgcn.vocab, bacgcn.features\n"
            "from bacgcn.captioner import load_blip2\n"
            "try: load_blip2('Salesforce/blip2-opt-2.7b', device='cpu')\n"
            "except ImportError as e: print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'bacgcn[caption]'" in out.stdout
    out = subprocess.run([sys.executable, "-c", "import sys, bacgcn.captioner, bacgcn.data, bacgcn.features; "
                          "print('transformers' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_the_command_line_shards_and_merges_a_folder(tiny, items, reference, tmp_path):
    "`bacgcn caption --dataset folder`: two shards, then --merge 2 finds them under the folder's name."
    from bacgcn.cli import main
    folder, out = items[0][1].parent, tmp_path / "out"
    opts = [f"model={tiny}", "device=cpu", "max_new_tokens=6", "batch_size=2", "chunk_size=2", "vocab=voc2007"]
    base = ["caption", "--dataset", "folder", "--data-root", str(folder), "--out", str(out)]
    for s in range(2):
        assert main([*base, "--shard", f"{s}/2", *[a for o in opts for a in ("-s", o)]]) == 0
    assert main([*base, "--merge", "2"]) == 0
    merged = read_caption_file(out / f"{folder.name}_captions.json")
    assert merged == read_caption_file(caption_paths(reference, "voc2007")["captions"])
