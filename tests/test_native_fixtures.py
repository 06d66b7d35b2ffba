"""Tests of native_fixtures: the dataset miniatures read back through bacgcn's real readers with the planted labels,
their JPEGs hold the planted colours at the declared boxes (EXIF orientation included), annotation files agree with
the boxes, and the caption files cover exactly the training ids."""
from __future__ import annotations

import hashlib
import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from bacgcn.captions import pseudo_labels, read_captions
from bacgcn.data import check_layout, load_dataset, read_coco, read_nuswide, read_voc
from bacgcn.metrics import difficult_conventions, mean_average_precision
from bacgcn.vocab import load_vocab
from native_fixtures import (BACKGROUND_RANGE, COCO_IDS, PALETTE, PROTOCOLS, Miniature, PlantedObject, edges_touched,
                             is_small, make_coco2014, make_miniature, make_nuswide, make_voc2007, make_voc2012,
                             planted_image, render_image)

TOL = 30  # colour distance: planted colour vs the median of its box after JPEG


@pytest.fixture(scope="module")
def minis(tmp_path_factory) -> dict[str, Miniature]:
    root = tmp_path_factory.mktemp("native")
    return {p: make_miniature(p, root / p) for p in PROTOCOLS}


def displayed(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.int16)


def box_median(arr: np.ndarray, box) -> np.ndarray:
    "Median colour of the box interior (a margin of up to 3 px left out: JPEG blurs the borders)."
    x0, y0, x1, y1 = box
    m = min(3, (x1 - x0) // 4, (y1 - y0) // 4)
    return np.median(arr[y0 + m:y1 - m, x0 + m:x1 - m].reshape(-1, 3), axis=0)


def dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


# ---------------------------------------------------------------------------------------------- images
def test_palette_is_distinct_and_far_from_the_background():
    for a, b in itertools.combinations(PALETTE, 2):
        assert dist(a, b) >= 60, (a, b)
    (g0, g1), (b0, b1) = (np.array(r, float) for r in BACKGROUND_RANGE[0]), (np.array(r, float) for r in BACKGROUND_RANGE[1])
    t, s = np.meshgrid(np.linspace(0, 1, 21), np.linspace(0, 1, 21))
    t, s = t.reshape(-1, 1), s.reshape(-1, 1)
    bg = (1 - s) * (g0 + t * (g1 - g0)) + s * (b0 + t * (b1 - b0))  # every background colour before noise
    for c in PALETTE:
        assert np.linalg.norm(bg - np.array(c, float), axis=1).min() >= 90, c


def test_render_puts_each_colour_exactly_in_its_box():
    objs = [PlantedObject("a", (0, 0, 40, 30), PALETTE[0]), PlantedObject("b", (50, 20, 101, 77), PALETTE[1], shape="ellipse"),
            PlantedObject("c", (170, 90, 200, 120), PALETTE[2])]
    arr = np.asarray(render_image((200, 120), objs, seed=1), dtype=np.int16)
    assert arr.shape == (120, 200, 3)
    for o in objs:
        ys, xs = np.nonzero((arr == o.colour).all(-1))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.box, o
    # the background is low-saturation and far from every palette colour
    bg = np.ones(arr.shape[:2], bool)
    for o in objs:
        bg[o.box[1]:o.box[3], o.box[0]:o.box[2]] = False
    px = arr[bg].astype(float)
    assert (px.max(1) - px.min(1)).max() < 60
    assert min(np.linalg.norm(px - np.array(c), axis=1).min() for c in PALETTE) > 60


def test_render_is_deterministic_and_seeded():
    objs = [PlantedObject("a", (10, 10, 40, 30), PALETTE[0])]
    a, b, c = (np.asarray(render_image((64, 48), objs, seed=s)) for s in (3, 3, 4))
    assert (a == b).all() and not (a == c).all()


def test_overlapping_or_outside_boxes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        render_image((100, 100), [PlantedObject("a", (0, 0, 50, 50), PALETTE[0]),
                                  PlantedObject("b", (40, 40, 60, 60), PALETTE[1])], seed=0)
    with pytest.raises(ValueError, match="inside"):
        planted_image(tmp_path / "x.jpg", (100, 100), [PlantedObject("a", (0, 0, 101, 50), PALETTE[0])], seed=0)


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_gives_the_displayed_image(tmp_path, orientation):
    size = (300, 200)
    objs = [PlantedObject("a", (0, 0, 60, 40), PALETTE[0]), PlantedObject("b", (240, 150, 300, 200), PALETTE[2]),
            PlantedObject("c", (120, 80, 150, 100), PALETTE[4], shape="ellipse")]
    p = planted_image(tmp_path / "x.jpg", size, objs, seed=5, exif_orientation=orientation)
    with Image.open(p) as im:
        assert im.format == "JPEG"
        assert im.getexif().get(0x0112) == orientation
        assert im.size == (size[::-1] if orientation in (5, 6, 7, 8) else size)
        stored = np.asarray(im.convert("RGB"), dtype=np.int16)
    arr = displayed(p)
    assert arr.shape == (200, 300, 3)
    ref = np.asarray(render_image(size, objs, seed=5), dtype=np.int16)
    assert np.abs(arr - ref).mean() < 4  # the displayed image IS the rendered one, up to JPEG
    for o in objs:
        assert dist(box_median(arr, o.box), o.colour) < TOL, o
    if orientation not in (None, 1):  # the pixels really are stored transformed
        assert stored.shape != arr.shape or np.abs(stored - ref).mean() > 20


def test_edges_and_small():
    o = PlantedObject("a", (0, 2, 40, 30), PALETTE[0])
    assert edges_touched(o, (100, 50)) == {"left", "top"}
    assert edges_touched(o, (100, 50), tol=0) == {"left"}
    assert edges_touched(PlantedObject("b", (90, 10, 100, 48), PALETTE[0]), (100, 50)) == {"right", "bottom"}
    assert is_small(PlantedObject("c", (0, 0, 12, 5), PALETTE[0]), (100, 50))
    assert not is_small(PlantedObject("c", (0, 0, 13, 5), PALETTE[0]), (100, 50))


# ---------------------------------------------------------------------------------------------- every miniature
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_splits_read_back_with_the_planted_labels(minis, protocol):
    m = minis[protocol]
    for split, ids in m.splits.items():
        ds = m.read(split)
        assert ds.image_ids == ids, split
        assert ds.class_names == load_vocab(protocol).classes
        assert (ds.labels == m.labels(split)).all(), split
        assert all(Path(p) == m.paths[i] for i, p in ds.items())
        for i, row in zip(ids, ds.labels):  # said plainly: positives are the planted classes, VOC difficult-only ignored
            easy = {o.name for o in m.objects[i] if not o.difficult}
            assert {ds.class_names[c] for c in np.flatnonzero(row == 1)} == easy
            assert {ds.class_names[c] for c in np.flatnonzero(row == -1)} == {o.name for o in m.objects[i]} - easy
    assert m.train_split in m.splits and m.test_split in m.splits


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_images_have_the_declared_sizes_and_colours(minis, protocol):
    m = minis[protocol]
    on_disk = [i for ids in m.splits.values() for i in ids if i not in m.missing] + m.dropped
    assert on_disk
    for i in dict.fromkeys(on_disk):
        arr = displayed(m.paths[i])
        assert arr.shape[1::-1] == m.sizes[i], i
        for o in m.objects[i]:
            assert o.colour == m.colours[o.name]
            assert dist(box_median(arr, o.box), o.colour) < TOL, (i, o)
        for a, b in itertools.combinations(m.objects[i], 2):  # no two boxes overlap
            assert max(a.box[0], b.box[0]) >= min(a.box[2], b.box[2]) or max(a.box[1], b.box[1]) >= min(a.box[3], b.box[3])
    names = list(m.colours)
    assert len(set(m.colours.values())) == len(names)  # one colour per class
    assert set(names) <= set(load_vocab(protocol).classes)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_caption_files(minis, protocol):
    m = minis[protocol]
    caps_path, recaps_path = m.caption_paths()
    assert (caps_path.name, recaps_path.name) == (f"{protocol}_captions.json", f"{protocol}_re_captions.json")
    train = m.splits[m.train_split]
    for p in (caps_path, recaps_path):
        d = json.loads(p.read_text(encoding="utf-8"))
        assert isinstance(d, dict)
        assert sorted(d) == sorted(f"{i}." for i in train)
        assert all(isinstance(v, list) and len(v) == 6 and all(isinstance(c, str) and c.strip() for c in v)
                   for v in d.values())
    caps = read_captions(caps_path, recaps_path)
    assert list(caps) == train
    # through the package's own caption parser: only planted classes are mentioned, large ones in most captions
    pl = pseudo_labels(caps, protocol)
    C = pl.n_classes
    for k, i in enumerate(pl.image_ids):
        mentioned = {pl.categories[c] for c in np.flatnonzero(pl.votes[k, :C])}
        assert mentioned <= {o.name for o in m.objects[i]}, i
        for o in m.objects[i]:
            if not is_small(o, m.sizes[i]):
                assert pl.votes[k, pl.categories.index(o.name)] >= 6, (i, o.name)
    assert pl.votes[:, C:].sum() > 0  # background categories come up sometimes


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deterministic(tmp_path, minis, protocol):
    def digest(m: Miniature) -> dict:
        base = m.data_root
        return {str(p.relative_to(base)): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(base.rglob("*")) if p.is_file()}

    a = make_miniature(protocol, tmp_path / "a")
    b = make_miniature(protocol, tmp_path / "b")
    assert digest(a) == digest(b) == digest(minis[protocol])
    assert a.splits == b.splits and a.objects == b.objects and a.sizes == b.sizes
    c = make_miniature(protocol, tmp_path / "c", seed=1)
    assert c.objects == a.objects  # the seed changes backgrounds and captions, never the ground truth
    dc, da = digest(c), digest(a)
    assert dc.keys() == da.keys() and dc != da
    assert c.caption_paths()[0].read_text() != a.caption_paths()[0].read_text()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_layout_checks_clean(minis, protocol):
    m = minis[protocol]
    for split in m.splits:
        if split.startswith("Segmentation/"):
            probs = check_layout(protocol, m.data_root, split.split("/")[1], image_set="Segmentation")
        else:
            probs = check_layout(protocol, m.data_root, split)
        if any(i in m.missing for i in m.splits[split]):
            assert len(probs) == 1 and "1 of" in probs[0].what and "image files missing" in probs[0].what
        else:
            assert probs == [], (split, probs)


# ---------------------------------------------------------------------------------------------- VOC2007
def _voc_xml(m: Miniature, image_id: str):
    year = m.protocol[3:]
    return ET.parse(m.data_root / "VOCdevkit" / f"VOC{year}" / "Annotations" / f"{image_id}.xml").getroot()


def test_voc2007_layout(minis):
    m = minis["voc2007"]
    voc = m.data_root / "VOCdevkit" / "VOC2007"
    assert {p.name for p in (voc / "ImageSets" / "Main").iterdir()} == {"trainval.txt", "train.txt", "val.txt", "test.txt"}
    assert sorted(m.splits["train"] + m.splits["val"]) == m.splits["trainval"]
    assert not set(m.splits["train"]) & set(m.splits["val"])
    assert not set(m.splits["trainval"]) & set(m.splits["test"])
    assert all(len(i) == 6 and i.isdigit() for i in m.objects)
    assert set(m.sizes.values()) == {(500, 375), (375, 500), (500, 333), (333, 500), (500, 200)}
    assert read_voc(m.data_root, "test").name == "voc2007"


@pytest.mark.parametrize("protocol", ["voc2007", "voc2012"])
def test_voc_xml_agrees_with_the_planted_boxes(minis, protocol):
    m = minis[protocol]
    for i, objs in m.objects.items():
        root = _voc_xml(m, i)
        assert root.findtext("filename") == f"{i}.jpg"
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == m.sizes[i]
        assert root.findtext("size/depth") == "3"
        xml_objs = root.findall("object")
        assert len(xml_objs) == len(objs)
        for e, o in zip(xml_objs, objs):
            assert e.findtext("name") == o.name
            assert e.findtext("pose") and e.findtext("truncated") in ("0", "1")
            b = e.find("bndbox")
            x0, y0, x1, y1 = o.box  # VOC: 1-based, inclusive
            assert [int(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")] == [x0 + 1, y0 + 1, x1, y1]
            diff = e.findtext("difficult")
            assert diff == str(int(o.difficult)) or (diff is None and not o.difficult)


def test_voc2007_difficult_modes(minis):
    m = minis["voc2007"]
    names = load_vocab("voc2007").classes
    for mode in ("positive", "ignore", "negative"):
        ds = read_voc(m.data_root, "test", difficult=mode, year=2007)
        assert (ds.labels == m.labels("test", mode)).all(), mode
    ign = read_voc(m.data_root, "test", difficult="ignore").labels
    pos = read_voc(m.data_root, "test", difficult="positive").labels
    neg = read_voc(m.data_root, "test", difficult="negative").labels
    # a difficult-only class in a test image: 1 / -1 / 0
    only = [(k, o.name) for k, i in enumerate(m.splits["test"]) for o in m.objects[i]
            if o.difficult and not any(p.name == o.name and not p.difficult for p in m.objects[i])]
    assert only
    for k, name in only:
        c = names.index(name)
        assert (pos[k, c], ign[k, c], neg[k, c]) == (1, -1, 0)
    # a class with both an easy and a difficult object stays positive in every mode
    both = [(k, o.name) for k, i in enumerate(m.splits["test"]) for o in m.objects[i]
            if o.difficult and any(p.name == o.name and not p.difficult for p in m.objects[i])]
    assert both
    for k, name in both:
        assert pos[k, names.index(name)] == ign[k, names.index(name)] == neg[k, names.index(name)] == 1
    assert (ign == -1).sum() == len(only)
    assert (read_voc(m.data_root, "test").labels == ign).all() and (m.read("test").labels == ign).all()  # the default


def test_voc2007_three_conventions_differ(minis):
    "A difficult-only class that is easy elsewhere (boat) and one that is difficult only (bottle): three numbers."
    m = minis["voc2007"]
    ign = m.read("test").labels
    names = load_vocab("voc2007").classes
    boat, bottle = names.index("boat"), names.index("bottle")
    assert sorted((ign[:, boat] == -1).nonzero()[0].tolist() + (ign[:, boat] == 1).nonzero()[0].tolist()) == [1, 2]
    assert (ign[:, bottle] == -1).sum() == 1 and not (ign[:, bottle] == 1).any()
    # every easy object found; boat: the difficult one ranked first, then a negative, then the easy one
    scores = (ign == 1).astype(float)
    scores[:, boat] = [0.8, 0.7, 0.9, 0.1]   # 000001 (no boat), 000002 (easy), 000003 (difficult), 000004 (no boat)
    scores[:, bottle] = [0.0, 0.9, 0.0, 0.0]   # the difficult bottle of 000002 found
    r = difficult_conventions(scores, ign)
    for mode in ("ignore", "positive", "negative"):   # the metric's reading = the reader's mode
        assert r[mode]["mAP"] == mean_average_precision(scores, m.read("test", difficult=mode).labels)["mAP"]
    # boat's AP by hand: ignore (neg, pos) 1/2; positive (pos, neg, pos) 5/6; negative (neg, neg, pos) 1/3
    assert [r[k]["ap"][boat] for k in ("ignore", "positive", "negative")] == pytest.approx([1 / 2, 5 / 6, 1 / 3])
    assert r["positive"]["mAP"] > r["ignore"]["mAP"] > r["negative"]["mAP"]
    assert bottle in r["ignore"]["excluded"] and bottle not in r["positive"]["excluded"]


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_voc2007_geometry_cases(minis, split):
    m = minis["voc2007"]
    ids = m.splits[split]
    edges = set().union(*(edges_touched(o, m.sizes[i]) for i in ids for o in m.objects[i]))
    assert edges == {"left", "top", "right", "bottom"}
    assert any(is_small(o, m.sizes[i]) for i in ids for o in m.objects[i])
    assert any(len({o.name for o in m.objects[i]}) >= 2 for i in ids)  # several classes in one image
    assert any(o.shape == "ellipse" for i in ids for o in m.objects[i])
    assert len({m.sizes[i] for i in ids}) >= 4


def test_voc2007_other_counts(tmp_path):
    m = make_voc2007(tmp_path, n_trainval=9, n_test=2)
    assert len(m.splits["trainval"]) == 9 and len(m.splits["test"]) == 2
    for split in m.splits:
        ds = load_dataset("voc2007", tmp_path, split)
        assert ds.image_ids == m.splits[split] and (ds.labels == m.labels(split)).all()
    for i in m.splits["trainval"]:
        arr = displayed(m.paths[i])
        assert arr.shape[1::-1] == m.sizes[i]
        for o in m.objects[i]:
            assert dist(box_median(arr, o.box), o.colour) < TOL
    assert sorted(json.loads(m.caption_paths()[0].read_text())) == sorted(f"{i}." for i in m.splits["trainval"])
    assert make_voc2007(tmp_path / "seeded", n_trainval=9, n_test=2, seed=3).objects == m.objects  # generated ones too


# ---------------------------------------------------------------------------------------------- VOC2012
def test_voc2012_layout(minis):
    m = minis["voc2012"]
    voc = m.data_root / "VOCdevkit" / "VOC2012"
    assert sorted(p.name for p in (voc / "ImageSets" / "Main").iterdir()) == ["train.txt", "val.txt"]
    assert sorted(p.name for p in (voc / "ImageSets" / "Segmentation").iterdir()) == ["train.txt", "val.txt"]
    for s in ("train", "val"):
        seg, main = set(m.splits[f"Segmentation/{s}"]), set(m.splits[s])
        assert seg < main  # strict subset
        ds = read_voc(m.data_root, s, image_set="Segmentation", difficult="ignore", year=2012)
        assert ds.image_ids == m.splits[f"Segmentation/{s}"]
        assert (ds.labels == m.labels(f"Segmentation/{s}", "ignore")).all()
    assert not set(m.splits["train"]) & set(m.splits["val"])
    assert all(len(i) == 11 and i[4] == "_" for i in m.objects)
    # some annotation files have no <difficult> tag at all, others do
    has_tag = {i: _voc_xml(m, i).find("object/difficult") is not None for i in m.objects}
    assert not all(has_tag.values()) and any(has_tag.values())
    # a person carries a <part> (head) that is not an object
    assert any(e.find("part/name") is not None for i in m.objects for e in _voc_xml(m, i).findall("object"))
    # difficult-only class in the protocol's test split
    ign = m.labels("Segmentation/val", "ignore")
    assert (ign == -1).any()
    # voc_root needs the year only when both years share a VOCdevkit
    assert load_dataset("voc2012", m.data_root, "val").name == "voc2012"


def test_voc2012_main_captions(minis):
    m = minis["voc2012"]
    caps, recaps = m.caption_paths("train")
    assert caps.parent != m.captions_dir
    assert sorted(json.loads(caps.read_text())) == sorted(f"{i}." for i in m.splits["train"])
    assert sorted(json.loads(recaps.read_text())) == sorted(f"{i}." for i in m.splits["train"])
    assert m.train_split == "Segmentation/train"


def test_voc2007_and_voc2012_can_share_a_root(tmp_path):
    a, b = make_voc2007(tmp_path), make_voc2012(tmp_path)
    assert load_dataset("voc2007", tmp_path, "test").image_ids == a.splits["test"]
    assert load_dataset("voc2012", tmp_path, "val", image_set="Segmentation").image_ids == b.splits["Segmentation/val"]


# ---------------------------------------------------------------------------------------------- COCO
def _instances(m: Miniature, split: str) -> dict:
    return json.loads((m.data_root / "annotations" / f"instances_{split}.json").read_text())


def test_coco_categories_have_the_real_ids(minis):
    m = minis["coco2014"]
    assert len(COCO_IDS) == 80 and COCO_IDS[:12] == [*range(1, 12), 13]
    assert set(range(1, 91)) - set(COCO_IDS) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    for split in ("train2014", "val2014"):
        d = _instances(m, split)
        assert set(d) == {"info", "licenses", "images", "annotations", "categories"}
        cats = {c["id"]: c["name"] for c in d["categories"]}
        assert sorted(cats) == COCO_IDS
        assert [cats[i] for i in sorted(cats)] == load_vocab("coco2014").classes
        assert (cats[1], cats[13], cats[27], cats[67], cats[70], cats[72], cats[90]) == (
            "person", "stop sign", "backpack", "dining table", "toilet", "tv", "toothbrush")
        assert read_coco(m.data_root, split).class_names == load_vocab("coco2014").classes


def test_coco_images_and_annotations(minis):
    m = minis["coco2014"]
    names = load_vocab("coco2014").classes
    by_id = dict(zip(COCO_IDS, names))
    for split in ("train2014", "val2014"):
        d = _instances(m, split)
        ids = [im["id"] for im in d["images"]]
        assert ids != sorted(ids)  # listed out of order, as in the real files
        for im in d["images"]:
            iid = Path(im["file_name"]).stem
            assert im["file_name"] == f"COCO_{split}_{im['id']:012d}.jpg"
            assert (m.data_root / split / im["file_name"]) == m.paths[iid] and m.paths[iid].is_file()
            assert (im["width"], im["height"]) == m.sizes[iid]
            anns = [a for a in d["annotations"] if a["image_id"] == im["id"]]
            objs = m.objects[iid]
            assert len(anns) == len(objs)
            for a, o in zip(anns, objs):
                assert by_id[a["category_id"]] == o.name
                x0, y0, x1, y1 = o.box
                assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0] and all(isinstance(v, float) for v in a["bbox"])
                assert a["iscrowd"] == int(o.crowd) and a["area"] > 0
                if o.crowd:
                    assert set(a["segmentation"]) == {"counts", "size"} and a["segmentation"]["size"] == [im["height"], im["width"]]
                    assert sum(a["segmentation"]["counts"]) == im["width"] * im["height"]
                else:
                    assert isinstance(a["segmentation"], list) and len(a["segmentation"][0]) >= 8
        assert len({a["id"] for a in d["annotations"]}) == len(d["annotations"])
        # the image without annotations is on disk but dropped by the reader (kept with labelled_only=False)
        empty = [i for i in m.dropped if f"_{split}_" in i]
        assert len(empty) == 1 and m.objects[empty[0]] == [] and empty[0] not in m.splits[split]
        assert empty[0] in read_coco(m.data_root, split, labelled_only=False).image_ids
        assert len(read_coco(m.data_root, split, labelled_only=False)) == len(m.splits[split]) + 1
    assert set(m.sizes.values()) == {(640, 480), (480, 640), (640, 427), (427, 640)}


def test_coco_crowd_counts_as_positive(minis):
    m = minis["coco2014"]
    crowd = [(s, i, o) for s in ("train2014", "val2014") for i in m.splits[s] for o in m.objects[i] if o.crowd]
    assert crowd
    names = load_vocab("coco2014").classes
    for s, i, o in crowd:
        assert not any(p.name == o.name and not p.crowd for p in m.objects[i])  # the class is there only as a crowd
        ds = read_coco(m.data_root, s)
        assert ds.labels[ds.image_ids.index(i), names.index(o.name)] == 1


def test_coco_exif_image(minis):
    m = minis["coco2014"]
    assert list(m.exif.values()) == [6]
    (iid, orient), = m.exif.items()
    assert iid in m.splits["train2014"]
    with Image.open(m.paths[iid]) as im:
        assert im.getexif()[0x0112] == 6
        assert im.size == m.sizes[iid][::-1]  # stored rotated
    arr = displayed(m.paths[iid])
    assert arr.shape[1::-1] == m.sizes[iid]
    for o in m.objects[iid]:
        assert dist(box_median(arr, o.box), o.colour) < TOL
    assert any(edges_touched(o, m.sizes[iid]) >= {"left", "top"} for o in m.objects[iid])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy 2 copy= warning
def test_coco_matches_pycocotools(minis):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    m = minis["coco2014"]
    for split in ("train2014", "val2014"):
        coco = COCO(str(m.data_root / "annotations" / f"instances_{split}.json"))
        for img_id, im in coco.imgs.items():
            iid = Path(im["file_name"]).stem
            for a, o in zip(coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None)), m.objects[iid]):
                mask = coco.annToMask(a).astype(bool)
                assert mask.shape == (im["height"], im["width"])
                x0, y0, x1, y1 = o.box
                inside = mask[y0:y1, x0:x1].sum()
                assert inside / mask.sum() > 0.97 and inside / ((x1 - x0) * (y1 - y0)) > (0.99 if o.crowd else 0.6)
                if o.crowd:
                    assert mask.sum() == a["area"] == (x1 - x0) * (y1 - y0)


# ---------------------------------------------------------------------------------------------- NUS-WIDE
def test_nuswide_release_layout(minis):
    m = minis["nuswide"]
    root = m.data_root
    concepts = (root / "Concepts81.txt").read_bytes()
    assert concepts.count(b"\r\n") == 81 and concepts.decode().split() == load_vocab("nuswide").classes
    for split in ("Train", "Test"):
        raw = (root / "ImageList" / f"{split}Imagelist.txt").read_bytes().decode()
        lines = raw.split("\r\n")[:-1]
        assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", "")
        assert lines == [i.replace("/", "\\") + ".jpg" for i in m.splits[split]]
        assert all("\\" in l and "/" not in l for l in lines)
        for concept in load_vocab("nuswide").classes:
            vals = (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{split}.txt").read_text().split()
            assert vals == [str(int(any(o.name == concept for o in m.objects[i]))) for i in m.splits[split]]
        ds = read_nuswide(root, split)
        assert ds.image_ids == m.splits[split]
        assert all(p == root / "Flickr" / f"{i}.jpg" for i, p in ds.items())
    assert {m.sizes[i] for i in m.objects} == {(500, 375), (240, 180), (180, 240)}
    assert len((root / "ImageList" / "Imagelist.txt").read_text().split()) == len(m.objects)


def test_nuswide_unlabelled_test_image(minis):
    m = minis["nuswide"]
    assert len(m.unlabelled) == 1 and m.unlabelled[0] in m.splits["Test"] and m.objects[m.unlabelled[0]] == []
    assert m.paths[m.unlabelled[0]].is_file()
    full = m.read("Test")
    assert full.image_ids == m.splits["Test"] and not full.labels[full.image_ids.index(m.unlabelled[0])].any()
    kept = m.read("Test", labelled_only=True)
    assert kept.image_ids == [i for i in m.splits["Test"] if i not in m.unlabelled]
    assert kept.labels.any(1).all() and (kept.labels == m.labels("Test")[full.labels.any(1)]).all()
    assert m.read("Train", labelled_only=True).image_ids == m.splits["Train"]   # every training image is labelled
    probs = check_layout("nuswide", m.data_root, "Test", labelled_only=True)   # the missing image is labelled
    n = len(kept)
    assert [p.what for p in probs] == [f"1 of {n} image files missing ({Path(m.paths[m.missing[0]]).name})"]


def test_nuswide_missing_image(minis):
    m = minis["nuswide"]
    assert len(m.missing) == 1 and m.missing[0] in m.splits["Test"]
    ds = read_nuswide(m.data_root, "Test")
    k = ds.image_ids.index(m.missing[0])
    assert not ds.image_paths[k].exists() and ds.image_paths[k] == m.paths[m.missing[0]]
    assert ds.labels[k].sum() == len({o.name for o in m.objects[m.missing[0]]}) > 0
    assert all(p.exists() for i, p in ds.items() if i not in m.missing)
    assert all(m.paths[i].is_file() for i in m.splits["Train"])


def test_small_objects_everywhere(minis):
    for m in minis.values():
        train, test = m.splits[m.train_split], m.splits[m.test_split]
        for ids in (train, test):
            assert any(is_small(o, m.sizes[i]) for i in ids for o in m.objects[i]), m.protocol


def test_other_builders_accept_counts(tmp_path):
    for build, kw, keys in [(make_voc2012, dict(n_train=8, n_val=2), ("train", "val")),
                            (make_coco2014, dict(n_train=7, n_val=1), ("train2014", "val2014")),
                            (make_nuswide, dict(n_train=2, n_test=6), ("Train", "Test"))]:
        m = build(tmp_path / build.__name__, **kw)
        assert [len(m.splits[k]) for k in keys] == list(kw.values())
        for split in m.splits:
            ds = m.read(split)
            assert ds.image_ids == m.splits[split] and (ds.labels == m.labels(split)).all()
        for i, objs in m.objects.items():
            if i in m.missing:
                continue
            arr = displayed(m.paths[i])
            for o in objs:
                assert dist(box_median(arr, o.box), o.colour) < TOL


def test_make_miniature_rejects_unknown(tmp_path):
    with pytest.raises(ValueError, match="unknown protocol"):
        make_miniature("imagenet", tmp_path)
