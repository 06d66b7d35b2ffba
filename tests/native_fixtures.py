"""Miniatures of VOC2007, VOC2012, COCO2014 and NUS-WIDE in their real on-disk formats, with ground truth about
WHERE each object is.

Every image is a real JPEG (quality 95) of a real size of its dataset: a mildly textured, low-saturation background
(greys and browns, deterministic in the seed) with each object drawn as a solid, saturated colour filling its box
(a rectangle, or an ellipse whose bounding box is the box). Colours come from `PALETTE`, one per class within a
miniature, all far from the background colours, so a test can find an object in a crop by colour distance.
Boxes are `(x0, y0, x1, y1)` pixels of the image as displayed (after EXIF orientation), end exclusive; within one
image no two boxes overlap.

    mini = make_miniature("voc2007", tmp_path)
    ds = mini.read("test")                               # bacgcn.data.load_dataset on the miniature
    mini.labels("test")                                  # the same matrix, from the planted objects (VOC: difficult
                                                         # objects as the devkit reads them, "ignore")

Plain functions (no pytest here); each builder writes under a folder given by the caller and returns a `Miniature`.
"""
from __future__ import annotations

import json
import math
import random
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bacgcn.vocab import load_vocab

__all__ = ["PALETTE", "BACKGROUND_RANGE", "PlantedObject", "Miniature", "PROTOCOLS", "render_image", "planted_image",
           "edges_touched", "is_small", "make_voc2007", "make_voc2012", "make_coco2014", "make_nuswide",
           "write_captions", "make_miniature"]

# ------------------------------------------------------------------------------------------------ colours
# Saturated colours, pairwise far apart and far from every background colour (tests check both).
PALETTE = [
    (230, 25, 25),    # red
    (25, 190, 45),    # green
    (25, 60, 235),    # blue
    (250, 230, 20),   # yellow
    (235, 30, 215),   # magenta
    (20, 220, 235),   # cyan
    (255, 140, 0),    # orange
    (125, 20, 215),   # purple
    (160, 255, 40),   # lime
    (255, 110, 190),  # pink
    (0, 130, 130),    # teal
    (20, 20, 140),    # navy
    (250, 250, 250),  # white
    (10, 10, 10),     # black
    (90, 170, 255),   # sky blue
    (0, 100, 0),      # dark green
    (170, 0, 80),     # crimson
    (120, 255, 180),  # mint
]
# Background colours are blends of these four: (dark, light) of a grey ramp and of a brown ramp, plus noise.
_GREY = ((82, 82, 82), (168, 168, 168))
_BROWN = ((92, 74, 58), (172, 150, 122))
_NOISE_SD = 3.0
BACKGROUND_RANGE = (_GREY, _BROWN)


# ------------------------------------------------------------------------------------------------ records
@dataclass
class PlantedObject:
    name: str  # class name of the dataset's vocabulary
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels of the DISPLAYED image, end exclusive
    colour: tuple[int, int, int]  # the solid colour it is drawn with
    difficult: bool = False  # VOC only
    crowd: bool = False  # COCO only (iscrowd=1, RLE segmentation)
    shape: str = "rect"  # "rect" or "ellipse" (box is then the ellipse's bounding box)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class Miniature:
    protocol: str  # "voc2007" | "voc2012" | "coco2014" | "nuswide"
    data_root: Path  # what a user passes as --data-root / -p data_root
    captions_dir: Path  # holds <stem>_captions.json and <stem>_re_captions.json (stem == protocol)
    splits: dict[str, list[str]]  # split name -> image ids as the reader returns them, in its order
    objects: dict[str, list[PlantedObject]]  # image id -> planted objects (also for dropped / missing images)
    sizes: dict[str, tuple[int, int]]  # image id -> (width, height) as displayed
    paths: dict[str, Path]  # image id -> file (for `missing` ids: where the reader looks, absent on disk)
    train_split: str = ""  # key of `splits` the captions cover (the protocol's training split)
    test_split: str = ""  # key of `splits` evaluated on
    colours: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # class name -> colour
    missing: list[str] = field(default_factory=list)  # listed by the reader, image file absent (NUS-WIDE)
    unlabelled: list[str] = field(default_factory=list)  # listed, on disk, none of the concepts (NUS-WIDE test)
    dropped: list[str] = field(default_factory=list)  # on disk and in the annotations, dropped by the reader (COCO: no annotations)
    exif: dict[str, int] = field(default_factory=dict)  # image id -> EXIF orientation of the stored file
    extra_captions: dict[str, Path] = field(default_factory=dict)  # other split key -> captions folder (VOC2012 Main train)

    # split keys are the reader's split names; "Segmentation/<split>" reads VOC2012's ImageSets/Segmentation
    def read(self, split: str, **kw):
        "The split as `bacgcn.data.load_dataset` reads it (keywords go to the reader)."
        from bacgcn.data import load_dataset

        if split.startswith("Segmentation/"):
            split, kw = split.split("/", 1)[1], {"image_set": "Segmentation", **kw}
        return load_dataset(self.protocol, self.data_root, split, **kw)

    @property
    def class_names(self) -> list[str]:
        return list(load_vocab(self.protocol).classes)

    def labels(self, split: str, difficult: str = "ignore") -> np.ndarray:
        "(N, C) int8 labels of `split` from the planted objects, classes in vocabulary order (VOC `difficult` modes)."
        names = self.class_names
        index = {n: c for c, n in enumerate(names)}
        y = np.zeros((len(self.splits[split]), len(names)), np.int8)
        for i, iid in enumerate(self.splits[split]):
            for o in self.objects[iid]:
                c = index[o.name]
                if not o.difficult or difficult == "positive":
                    y[i, c] = 1
                elif difficult == "ignore" and y[i, c] == 0:
                    y[i, c] = -1
        return y

    def caption_paths(self, split: str | None = None) -> tuple[Path, Path]:
        "(captions, re-captions) files of the training split (or of `split`, for `extra_captions`)."
        d = self.captions_dir if split in (None, self.train_split) else self.extra_captions[split]
        return d / f"{self.protocol}_captions.json", d / f"{self.protocol}_re_captions.json"


PROTOCOLS = ("voc2007", "voc2012", "coco2014", "nuswide")


# ------------------------------------------------------------------------------------------------ images
def _seed_of(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def _background(size: tuple[int, int], seed: int) -> np.ndarray:
    "H, W, 3 uint8: smooth blend of a grey and a brown ramp, plus a little pixel noise."
    w, h = size
    rng = np.random.default_rng(seed)

    def smooth(cells):
        gw, gh = max(2, round(cells * w / max(w, h))), max(2, round(cells * h / max(w, h)))
        low = Image.fromarray(rng.random((gh, gw)).astype(np.float32), mode="F")
        return np.asarray(low.resize((w, h), Image.BICUBIC), dtype=np.float32).clip(0, 1)[..., None]

    t, s = smooth(5), smooth(3)  # brightness along the ramp, grey <-> brown
    g0, g1, b0, b1 = (np.array(c, np.float32) for c in (*_GREY, *_BROWN))
    img = (1 - s) * (g0 + t * (g1 - g0)) + s * (b0 + t * (b1 - b0))
    img += rng.normal(0, _NOISE_SD, (h, w, 1)).astype(np.float32)  # luminance grain, keeps saturation low
    return img.round().clip(0, 255).astype(np.uint8)


def _check_objects(size, objects):
    w, h = size
    for k, o in enumerate(objects):
        x0, y0, x1, y1 = o.box
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"box {o.box} of {o.name!r} is not inside an image of size {size}")
        if o.shape not in ("rect", "ellipse"):
            raise ValueError(f"shape {o.shape!r}: expected 'rect' or 'ellipse'")
        for p in objects[:k]:
            if max(x0, p.box[0]) < min(x1, p.box[2]) and max(y0, p.box[1]) < min(y1, p.box[3]):
                raise ValueError(f"boxes {p.box} ({p.name}) and {o.box} ({o.name}) overlap")


def render_image(size: tuple[int, int], objects, seed: int) -> Image.Image:
    "The displayed image (RGB, `size` = (W, H)) with `objects` planted; raises if boxes overlap or leave the image."
    objects = list(objects)
    _check_objects(size, objects)
    img = Image.fromarray(_background(size, seed), "RGB")
    draw = ImageDraw.Draw(img)
    for o in objects:
        x0, y0, x1, y1 = o.box
        if o.shape == "ellipse":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=tuple(o.colour))
        else:
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=tuple(o.colour))
    return img


# the transposition that turns the displayed image into the stored pixels for each EXIF orientation:
# the inverse of what `ImageOps.exif_transpose` applies
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def planted_image(path, size: tuple[int, int], objects, seed: int, exif_orientation: int | None = None) -> Path:
    """Write a JPEG (quality 95) whose displayed image has `size` = (W, H) and `objects` at their boxes.
    With `exif_orientation` (2..8), the pixels are stored transposed and the EXIF Orientation tag set, so that
    `ImageOps.exif_transpose(Image.open(path))` gives the displayed image. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = render_image(size, objects, seed)
    kw = {}
    if exif_orientation is not None:
        if exif_orientation not in _STORE:
            raise ValueError(f"exif_orientation={exif_orientation!r}: expected 1..8")
        if _STORE[exif_orientation] is not None:
            img = img.transpose(_STORE[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation  # Orientation
        kw["exif"] = exif.tobytes()
    img.save(path, format="JPEG", quality=95, **kw)
    return path


def edges_touched(obj: PlantedObject, size: tuple[int, int], tol: int = 3) -> set[str]:
    "The image edges ('left', 'top', 'right', 'bottom') the box touches or comes within `tol` pixels of."
    (x0, y0, x1, y1), (w, h) = obj.box, size
    return {e for e, near in (("left", x0 <= tol), ("top", y0 <= tol), ("right", x1 >= w - tol),
                              ("bottom", y1 >= h - tol)) if near}


def is_small(obj: PlantedObject, size: tuple[int, int]) -> bool:
    "The box's longer side is under 1/8 of the image's longer side."
    return max(obj.width, obj.height) < max(size) / 8


# ------------------------------------------------------------------------------------------------ specs
# An image spec: (image id, (W, H), [(class, box, shape, flag)]); flag "difficult" (VOC) or "crowd" (COCO).
def _objects(spec_objects, colours) -> list[PlantedObject]:
    out = []
    for name, box, shape, *flag in spec_objects:
        out.append(PlantedObject(name, tuple(box), colours[name], difficult="difficult" in flag,
                                 crowd="crowd" in flag, shape=shape))
    return out


def _colours(classes) -> dict[str, tuple[int, int, int]]:
    classes = list(dict.fromkeys(classes))
    if len(classes) > len(PALETTE):
        raise ValueError(f"{len(classes)} classes but only {len(PALETTE)} palette colours")
    return {c: PALETTE[k] for k, c in enumerate(classes)}


def _extra_specs(kind: str, count: int, ids, sizes, classes) -> list:
    """`count` generated image specs (ids from `ids(k)`), 1-3 non-overlapping objects of `classes`, the first large.
    Independent of the seed: the seed changes backgrounds and captions, never the ground truth."""
    rng = random.Random(_seed_of("extra", kind))
    specs = []
    for k in range(count):
        w, h = sizes[k % len(sizes)]
        objs, boxes = [], []
        for j in range(rng.randint(1, 3)):
            lo, hi = (0.35, 0.6) if j == 0 else (0.1, 0.3)
            for _ in range(200):
                bw, bh = int(w * rng.uniform(lo, hi)), int(h * rng.uniform(lo, hi))
                x0, y0 = rng.randint(0, w - bw), rng.randint(0, h - bh)
                b = (x0, y0, x0 + bw, y0 + bh)
                if all(max(b[0], c[0]) >= min(b[2], c[2]) or max(b[1], c[1]) >= min(b[3], c[3]) for c in boxes):
                    boxes.append(b)
                    objs.append((rng.choice(classes), b, rng.choice(("rect", "ellipse"))))
                    break
        specs.append((ids(k), (w, h), objs))
    return specs


def _take(specs, n: int, extra) -> list:
    "The first `n` hand-made specs, completed with generated ones."
    if n < 0:
        raise ValueError(f"negative image count {n}")
    return list(specs[:n]) + (extra(n - len(specs)) if n > len(specs) else [])


def _planted(protocol: str, spec, colours, seed: int, path: Path, objects, sizes, paths, exif=None, write=True):
    iid, size, objs = spec
    objects[iid] = _objects(objs, colours)
    sizes[iid], paths[iid] = tuple(size), path
    if write:
        planted_image(path, size, objects[iid], _seed_of(protocol, iid, seed), exif_orientation=exif)


# ------------------------------------------------------------------------------------------------ VOC
VOC_SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 200)]

_VOC2007_TRAINVAL = [
    ("000005", (500, 375), [("person", (0, 60, 150, 375), "rect"),  # left + bottom edge
                            ("dog", (260, 190, 420, 330), "ellipse"),
                            ("bottle", (440, 40, 470, 90), "rect")]),  # small
    ("000007", (375, 500), [("car", (40, 0, 335, 140), "rect"),  # top edge
                            ("cat", (100, 300, 300, 470), "ellipse")]),
    ("000009", (500, 333), [("bus", (300, 80, 500, 300), "rect"),  # right edge
                            ("horse", (20, 110, 200, 300), "ellipse")]),
    ("000012", (333, 500), [("tvmonitor", (80, 60, 250, 200), "rect"),
                            ("chair", (60, 380, 270, 498), "rect")]),  # 2 px from the bottom
    ("000016", (500, 200), [("train", (10, 40, 380, 170), "rect"),
                            ("bird", (440, 3, 472, 30), "ellipse")]),  # small, 3 px from the top
    ("000017", (500, 375), [("aeroplane", (0, 0, 90, 60), "rect"),  # top-left corner
                            ("sheep", (120, 100, 380, 300), "ellipse")]),
]
_VOC2007_TEST = [
    ("000001", (500, 375), [("dog", (0, 150, 140, 300), "rect"),  # left edge
                            ("person", (200, 50, 330, 375), "rect")]),  # bottom edge
    ("000002", (375, 500), [("boat", (30, 0, 345, 160), "rect"),  # top edge
                            ("car", (50, 250, 300, 420), "ellipse"),
                            ("bottle", (330, 440, 365, 497), "rect", "difficult")]),  # small, difficult-only class
    ("000003", (500, 333), [("cow", (40, 60, 300, 300), "ellipse"),
                            ("pottedplant", (420, 100, 500, 260), "rect"),  # right edge
                            ("boat", (330, 270, 400, 320), "rect", "difficult")]),  # difficult-only; easy in 000002
    ("000004", (333, 500), [("person", (100, 40, 230, 280), "rect"),
                            ("person", (10, 10, 50, 60), "rect", "difficult"),  # small; easy person too
                            ("sofa", (0, 320, 333, 500), "rect")]),  # left + right + bottom edge
]

_VOC2012_TRAIN = [
    ("2007_000032", (500, 281), [("aeroplane", (100, 50, 400, 200), "rect"),
                                 ("person", (0, 180, 60, 281), "rect")]),  # left + bottom edge
    ("2008_000008", (500, 442), [("horse", (53, 87, 471, 420), "ellipse"),
                                 ("person", (150, 0, 230, 80), "rect")]),  # top edge
    ("2008_000015", (375, 500), [("bottle", (300, 200, 375, 420), "rect"),  # right edge
                                 ("diningtable", (20, 300, 280, 500), "rect")]),  # bottom edge
    ("2009_000012", (500, 333), [("cat", (100, 80, 360, 300), "ellipse"),
                                 ("pottedplant", (460, 10, 490, 45), "rect")]),  # small
    ("2010_000038", (333, 500), [("motorbike", (40, 150, 300, 420), "rect"),
                                 ("person", (100, 0, 230, 140), "rect")]),  # top edge
    ("2011_000003", (500, 375), [("boat", (0, 200, 500, 375), "rect"),  # left + right + bottom edge
                                 ("bird", (200, 40, 260, 90), "ellipse")]),  # small
]
_VOC2012_VAL = [
    ("2007_000033", (500, 366), [("aeroplane", (0, 100, 480, 280), "rect")]),  # left edge
    ("2008_000009", (500, 375), [("cow", (30, 80, 300, 330), "ellipse"),
                                 ("sheep", (400, 300, 460, 372), "rect", "difficult")]),  # difficult-only, 3 px from the bottom
    ("2009_000020", (375, 500), [("dog", (40, 40, 330, 400), "ellipse"),
                                 ("sofa", (0, 420, 375, 500), "rect")]),  # left + right + bottom edge
    ("2010_000045", (500, 333), [("train", (0, 40, 500, 260), "rect"),  # left + right edge
                                 ("tvmonitor", (20, 280, 70, 330), "rect")]),  # small, 3 px from the bottom
]
_VOC2012_NO_DIFFICULT_TAG = ("2010_", "2011_")  # as in real VOC2012, these XML files have no <difficult> tags


def _sub(parent: ET.Element, tag: str, text=None) -> ET.Element:
    e = ET.SubElement(parent, tag)
    if text is not None:
        e.text = str(text)
    return e


def _voc_bndbox(parent: ET.Element, box, sorted_tags: bool):
    "VOC 1-based inclusive pixel coordinates of the end-exclusive 0-based `box`."
    x0, y0, x1, y1 = box
    b = _sub(parent, "bndbox")
    vals = dict(xmin=x0 + 1, ymin=y0 + 1, xmax=x1, ymax=y1)
    for k in (sorted(vals) if sorted_tags else vals):
        _sub(b, k, vals[k])


def voc_annotation(image_id: str, size, objects, year: str, difficult_tag: bool = True) -> str:
    """One `Annotations/<id>.xml` in the devkit's layout: VOC2007's tag order, or VOC2012's alphabetical one (with
    <occluded> and a head <part> for each person). `difficult_tag=False` leaves out <difficult> (some VOC2012 files)."""
    w, h = size
    root = ET.Element("annotation")
    v2012 = str(year) == "2012"

    def obj_el(o: PlantedObject):
        e = ET.Element("object")
        trunc = int(bool(edges_touched(o, size, tol=0)))
        fields = dict(name=o.name, pose="Unspecified", truncated=trunc)
        if difficult_tag:
            fields["difficult"] = int(o.difficult)
        if v2012:
            fields["occluded"] = 0
            for k in sorted([*fields, "bndbox"] + (["part"] if o.name == "person" else [])):
                if k == "bndbox":
                    _voc_bndbox(e, o.box, True)
                elif k == "part":  # the person layout's head: inside the person box, not an object
                    p = _sub(e, "part")
                    _sub(p, "name", "head")
                    x0, y0, x1, y1 = o.box
                    _voc_bndbox(p, (x0 + o.width // 4, y0, x1 - o.width // 4, y0 + max(1, o.height // 4)), True)
                else:
                    _sub(e, k, fields[k])
        else:
            for k, v in fields.items():
                _sub(e, k, v)
            _voc_bndbox(e, o.box, False)
        return e

    if v2012:
        _sub(root, "filename", f"{image_id}.jpg")
        _sub(root, "folder", "VOC2012")
        for o in objects:
            root.append(obj_el(o))
        _sub(root, "segmented", 0)
        s = _sub(root, "size")
        _sub(s, "depth", 3), _sub(s, "height", h), _sub(s, "width", w)
        src = _sub(root, "source")
        yr = image_id[:4]
        _sub(src, "annotation", f"PASCAL VOC{yr}"), _sub(src, "database", f"The VOC{yr} Database"), _sub(src, "image", "flickr")
    else:
        _sub(root, "folder", "VOC2007")
        _sub(root, "filename", f"{image_id}.jpg")
        src = _sub(root, "source")
        _sub(src, "database", "The VOC2007 Database"), _sub(src, "annotation", "PASCAL VOC2007")
        _sub(src, "image", "flickr"), _sub(src, "flickrid", 300000000 + int(image_id))
        own = _sub(root, "owner")
        _sub(own, "flickrid", "miniature"), _sub(own, "name", "?")
        s = _sub(root, "size")
        _sub(s, "width", w), _sub(s, "height", h), _sub(s, "depth", 3)
        _sub(root, "segmented", 0)
        for o in objects:
            root.append(obj_el(o))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_voc(voc: Path, year: str, specs, colours, seed, objects, sizes, paths):
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    for spec in specs:
        iid = spec[0]
        _planted(f"voc{year}", spec, colours, seed, voc / "JPEGImages" / f"{iid}.jpg", objects, sizes, paths)
        tag = not (year == "2012" and iid.startswith(_VOC2012_NO_DIFFICULT_TAG))
        xml = voc_annotation(iid, sizes[iid], objects[iid], year, difficult_tag=tag)
        (voc / "Annotations" / f"{iid}.xml").write_text(xml, encoding="utf-8")


def _write_lists(folder: Path, lists: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for split, ids in lists.items():
        (folder / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def make_voc2007(root, *, n_trainval: int = 6, n_test: int = 4, seed: int = 0) -> Miniature:
    """`root/VOCdevkit/VOC2007` with Annotations/, ImageSets/Main/{trainval,train,val,test}.txt and JPEGImages/.
    The default counts hold the hand-made images (edges, small and difficult objects); more are generated."""
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2007"
    classes = sorted({o[0] for _, _, objs in _VOC2007_TRAINVAL + _VOC2007_TEST for o in objs})
    colours = _colours(classes)
    extra = lambda base: lambda n: _extra_specs(f"voc2007-{base}", n, lambda k: f"{base + k:06d}", VOC_SIZES, classes)
    trainval = _take(_VOC2007_TRAINVAL, n_trainval, extra(1000))
    test = _take(_VOC2007_TEST, n_test, extra(2000))
    objects, sizes, paths = {}, {}, {}
    _write_voc(voc, "2007", trainval + test, colours, seed, objects, sizes, paths)
    tv = sorted(s[0] for s in trainval)
    splits = dict(trainval=tv, train=tv[0::2], val=tv[1::2], test=sorted(s[0] for s in test))
    _write_lists(voc / "ImageSets" / "Main", splits)
    mini = Miniature("voc2007", root, root / "captions", splits, objects, sizes, paths, "trainval", "test", colours)
    write_captions(mini, seed=seed)
    return mini


def _strict_subset(ids: list[str]) -> list[str]:
    "Every image but each third one (positions 2, 5, ...); at least one left out."
    keep = [i for j, i in enumerate(ids) if j % 3 != 2]
    return keep if len(keep) < len(ids) else ids[:-1]


def make_voc2012(root, *, n_train: int = 6, n_val: int = 4, seed: int = 0) -> Miniature:
    """`root/VOCdevkit/VOC2012`: Annotations/ (the 2010_/2011_ files without <difficult> tags), ImageSets/Main/
    {train,val}.txt, ImageSets/Segmentation/{train,val}.txt (strict subsets of Main: every image but each third
    one), JPEGImages/ (no SegmentationClass/ masks: no reader uses them). Split keys: "train", "val" (Main), "Segmentation/train", "Segmentation/val". Captions cover
    Segmentation train (the authors' protocol); `extra_captions["train"]` holds captions of Main train."""
    if n_train < 2 or n_val < 2:
        raise ValueError("VOC2012 needs at least 2 train and 2 val images (Segmentation lists are strict subsets)")
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    classes = sorted({o[0] for _, _, objs in _VOC2012_TRAIN + _VOC2012_VAL for o in objs})
    colours = _colours(classes)
    extra = lambda base: lambda n: _extra_specs(f"voc2012-{base}", n, lambda k: f"2012_{base + k:06d}", VOC_SIZES,
                                                classes)
    train, val = _take(_VOC2012_TRAIN, n_train, extra(1000)), _take(_VOC2012_VAL, n_val, extra(2000))
    objects, sizes, paths = {}, {}, {}
    _write_voc(voc, "2012", train + val, colours, seed, objects, sizes, paths)
    main = dict(train=sorted(s[0] for s in train), val=sorted(s[0] for s in val))
    seg = {k: _strict_subset(ids) for k, ids in main.items()}
    _write_lists(voc / "ImageSets" / "Main", main)
    _write_lists(voc / "ImageSets" / "Segmentation", seg)
    splits = {**main, **{f"Segmentation/{k}": v for k, v in seg.items()}}
    mini = Miniature("voc2012", root, root / "captions", splits, objects, sizes, paths, "Segmentation/train",
                     "Segmentation/val", colours, extra_captions={"train": root / "captions" / "voc2012-main"})
    write_captions(mini, seed=seed)
    write_captions(mini, seed=seed, split="train", out_dir=mini.extra_captions["train"])
    return mini


# ------------------------------------------------------------------------------------------------ COCO
# the 80 category ids of COCO 2014/2017, in the order of the names in load_vocab("coco2014").classes
COCO_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
            *range(84, 91)]
_COCO_SUPER = [("person", 1), ("vehicle", 8), ("outdoor", 5), ("animal", 10), ("accessory", 5), ("sports", 10),
               ("kitchen", 7), ("food", 10), ("furniture", 6), ("electronic", 6), ("appliance", 5), ("indoor", 7)]
COCO_SIZES = [(640, 480), (480, 640), (640, 427), (427, 640)]

_COCO_TRAIN = [
    (9, (640, 480), [("bowl", (0, 300, 200, 480), "ellipse"),  # left + bottom edge
                     ("broccoli", (300, 40, 520, 250), "rect"),
                     ("orange", (596, 4, 636, 44), "ellipse")]),  # small, 4 px from top and right
    (25, (427, 640), [("giraffe", (80, 0, 340, 520), "rect")]),  # top edge
    (30, (480, 640), [("potted plant", (0, 0, 200, 300), "rect"),  # top-left corner; image stored rotated, EXIF 6
                      ("vase", (250, 350, 470, 620), "ellipse"),
                      ("cell phone", (400, 20, 440, 70), "rect")]),  # small
    (34, (640, 427), [("zebra", (100, 80, 560, 400), "ellipse")]),
    (36, (480, 640), [("person", (0, 380, 480, 640), "rect", "crowd"),  # crowd only; left + right + bottom edge
                      ("umbrella", (100, 40, 380, 300), "rect")]),
    (49, (640, 480), [("car", (0, 200, 180, 330), "rect"),  # left edge
                      ("car", (450, 210, 640, 340), "rect"),  # right edge; two cars
                      ("traffic light", (300, 30, 320, 80), "rect")]),  # small
]
_COCO_VAL = [
    (42, (640, 480), [("dog", (100, 100, 500, 470), "ellipse"),
                      ("frisbee", (560, 10, 600, 40), "ellipse")]),  # small
    (73, (427, 640), [("motorcycle", (30, 200, 400, 640), "rect"),  # bottom edge
                      ("person", (120, 0, 300, 190), "rect")]),  # top edge
    (74, (640, 427), [("dog", (0, 150, 200, 427), "rect"),  # left + bottom edge
                      ("bicycle", (300, 60, 640, 300), "rect")]),  # right edge
    (133, (480, 640), [("bed", (0, 300, 480, 640), "rect"),  # left + right + bottom edge
                       ("teddy bear", (20, 20, 70, 80), "rect")]),  # small
]
_COCO_EMPTY = {"train2014": (61, (640, 427)), "val2014": (136, (640, 480))}  # no annotations: dropped by the reader
_COCO_EXIF = {30: 6}


def _coco_file(split: str, image_id: int) -> str:
    return f"COCO_{split}_{image_id:012d}.jpg"


def _rle(mask: np.ndarray) -> list[int]:
    "COCO's uncompressed RLE counts of a boolean (H, W) mask: column-major runs, starting with zeros."
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if not flat[0] else [0, *counts]


def _ellipse_polygon(box, n: int = 16) -> list[float]:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    pts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        pts += [round(cx + rx * math.cos(a), 2), round(cy + ry * math.sin(a), 2)]
    return pts


def _polygon_area(poly) -> float:
    x, y = np.array(poly[0::2]), np.array(poly[1::2])
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def coco_annotation(ann_id: int, image_id: int, category_id: int, obj: PlantedObject, size) -> dict:
    "One instance annotation: polygon for ordinary objects, uncompressed RLE for a crowd; bbox [x, y, w, h] floats."
    x0, y0, x1, y1 = obj.box
    if obj.crowd:
        w, h = size
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True  # crowds are planted as rectangles
        seg, area = {"counts": _rle(mask), "size": [h, w]}, float(mask.sum())
    else:
        poly = ([float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]
                if obj.shape == "rect" else _ellipse_polygon(obj.box))
        seg, area = [poly], _polygon_area(poly)
    return dict(segmentation=seg, area=area, iscrowd=int(obj.crowd), image_id=image_id,
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], category_id=category_id, id=ann_id)


def make_coco2014(root, *, n_train: int = 6, n_val: int = 4, seed: int = 0) -> Miniature:
    """`root/annotations/instances_{train,val}2014.json` (the 80 categories with their real ids 1..90) and images
    `root/train2014/COCO_train2014_%012d.jpg`, `root/val2014/...`. Each split also holds one image without
    annotations (listed in `dropped`: on disk and in 'images', dropped by the reader). Image 30 of train is stored
    rotated with EXIF orientation 6; its JSON width/height, bbox and segmentation are in DISPLAYED coordinates."""
    root = Path(root)
    names = load_vocab("coco2014").classes
    if len(names) != len(COCO_IDS):
        raise AssertionError(f"coco2014 vocabulary has {len(names)} classes, expected {len(COCO_IDS)}")
    cat_id = dict(zip(names, COCO_IDS))
    supers = [s for s, n in _COCO_SUPER for _ in range(n)]
    categories = [dict(supercategory=s, id=i, name=n) for s, i, n in zip(supers, COCO_IDS, names)]
    classes = list(dict.fromkeys(o[0] for _, _, objs in _COCO_TRAIN + _COCO_VAL for o in objs))
    colours = _colours(classes)
    extra = lambda base: lambda n: _extra_specs(f"coco-{base}", n, lambda k: base + k, COCO_SIZES, classes)
    parts = {"train2014": _take(_COCO_TRAIN, n_train, extra(100000)), "val2014": _take(_COCO_VAL, n_val, extra(200000))}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    objects, sizes, paths, splits, dropped, exif = {}, {}, {}, {}, [], {}
    ann_id = 100000
    for split, specs in parts.items():
        empty_id, empty_size = _COCO_EMPTY[split]
        specs = specs + [(empty_id, empty_size, [])]
        images, anns = [], []
        for num, size, objs in specs:
            fname = _coco_file(split, num)
            iid = Path(fname).stem
            orient = _COCO_EXIF.get(num) if split == "train2014" else None
            _planted("coco2014", (iid, size, objs), colours, seed, root / split / fname, objects, sizes, paths, orient)
            if orient:
                exif[iid] = orient
            w, h = size
            images.append(dict(license=1 + num % 6, file_name=fname, coco_url=f"http://images.cocodataset.org/{split}/{fname}",
                               height=h, width=w, date_captured="2013-11-14 11:18:45",
                               flickr_url=f"http://farm3.staticflickr.com/miniature/{num}.jpg", id=num))
            for o in objects[iid]:
                ann_id += 1
                anns.append(coco_annotation(ann_id, num, cat_id[o.name], o, size))
        dropped.append(Path(_coco_file(split, empty_id)).stem)
        images = [images[k] for k in random.Random(_seed_of("coco-order", split)).sample(range(len(images)), len(images))]
        d = dict(info=dict(description="COCO 2014 Dataset (miniature)", url="http://cocodataset.org", version="1.0",
                           year=2014, contributor="COCO Consortium", date_created="2017/09/01"),
                 images=images,  # not sorted by id, as in the real files
                 licenses=[dict(url=f"http://creativecommons.org/licenses/{k}/2.0/", id=i, name=k)
                           for i, k in enumerate(["by-nc-sa", "by-nc", "by-nc-nd", "by", "by-sa", "by-nd"], 1)],
                 annotations=anns, categories=categories)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(d), encoding="utf-8")
        splits[split] = [Path(_coco_file(split, num)).stem for num, _, objs in sorted(specs) if objs]
    mini = Miniature("coco2014", root, root / "captions", splits, objects, sizes, paths, "train2014", "val2014",
                     colours, dropped=dropped, exif=exif)
    write_captions(mini, seed=seed)
    return mini


# ------------------------------------------------------------------------------------------------ NUS-WIDE
NUS_SIZES = [(500, 375), (240, 180), (180, 240)]

_NUS_TRAIN = [
    ("actor/0001_2124494179", (500, 375), [("person", (0, 50, 180, 375), "rect"),  # left + bottom edge
                                           ("flags", (300, 20, 480, 140), "rect")]),
    ("airport/0002_1431208563", (500, 375), [("plane", (50, 80, 450, 260), "ellipse"),
                                             ("vehicle", (460, 330, 495, 365), "rect")]),  # small
    ("animal/0003_2366742718", (240, 180), [("dog", (20, 30, 140, 170), "ellipse"),
                                            ("cat", (160, 0, 240, 90), "rect")]),  # top + right edge
    ("beach/0004_2192637405", (180, 240), [("boats", (20, 100, 160, 200), "rect"),
                                           ("birds", (120, 10, 140, 25), "ellipse")]),  # small
    ("castle/0005_1573849211", (500, 375), [("tower", (200, 0, 300, 300), "rect"),  # top edge
                                            ("sun", (400, 30, 470, 100), "ellipse")]),
    ("cityscape/0006_2617303254", (240, 180), [("window", (0, 120, 100, 180), "rect"),  # left + bottom edge
                                               ("buildings", (120, 10, 240, 110), "rect")]),  # right edge
]
_NUS_TEST = [
    ("dog/0007_1882416473", (500, 375), [("dog", (100, 100, 400, 375), "rect"),  # bottom edge
                                         ("toy", (20, 20, 50, 50), "rect")]),  # small
    ("horses/0008_2339820714", (240, 180), [("horses", (10, 20, 200, 170), "ellipse")]),
    ("statue/0009_427538932", (180, 240), [("statue", (40, 0, 140, 240), "rect")]),  # top + bottom edge
    ("sunset/0011_2960712446", (240, 180), []),  # none of the 81 concepts: an unlabelled test image
    ("zebra/0010_2498471264", (500, 375), [("zebra", (300, 100, 500, 300), "rect")]),  # right edge; NOT on disk
]


def make_nuswide(root, *, n_train: int = 6, n_test: int = 5, seed: int = 0) -> Miniature:
    """The release layout: `Concepts81.txt` (CRLF), `ImageList/{Train,Test}Imagelist.txt` (`folder\\file.jpg`, CRLF)
    and `ImageList/Imagelist.txt` (full Windows paths), `Groundtruth/TrainTestLabels/Labels_<concept>_<split>.txt`
    (one 0/1 per line, CRLF), images `Flickr/<folder>/<file>.jpg`. Labels are the planted classes. The last test
    image is listed but not on disk (`missing`); the reader still returns it. One test image shows none of the
    concepts (`unlabelled`): the reader keeps it by default and drops it with `labelled_only=True`."""
    root = Path(root)
    concepts = load_vocab("nuswide").classes
    classes = list(dict.fromkeys(o[0] for _, _, objs in _NUS_TRAIN + _NUS_TEST for o in objs))
    colours = _colours(classes)
    extra = lambda base: lambda n: _extra_specs(f"nus-{base}", n, lambda k: f"extra/{base + k:04d}_{_seed_of(base, k)}",
                                                NUS_SIZES, classes)
    parts = {"Train": _take(_NUS_TRAIN, n_train, extra(1000)), "Test": _take(_NUS_TEST, n_test, extra(2000))}
    missing = [parts["Test"][-1][0]] if parts["Test"] else []
    gt = root / "Groundtruth" / "TrainTestLabels"
    gt.mkdir(parents=True, exist_ok=True)
    (root / "ImageList").mkdir(exist_ok=True)
    crlf = lambda lines: "".join(f"{l}\r\n" for l in lines)
    (root / "Concepts81.txt").write_bytes(crlf(concepts).encode())
    objects, sizes, paths, splits, everything = {}, {}, {}, {}, []
    for split, specs in parts.items():
        for spec in specs:
            iid = spec[0]
            _planted("nuswide", spec, colours, seed, root / "Flickr" / f"{iid}.jpg", objects, sizes, paths,
                     write=iid not in missing)
        ids = [s[0] for s in specs]
        splits[split] = ids
        everything += ids
        rel = [i.replace("/", "\\") + ".jpg" for i in ids]
        (root / "ImageList" / f"{split}Imagelist.txt").write_bytes(crlf(rel).encode())
        for concept in concepts:
            col = [int(any(o.name == concept for o in objects[i])) for i in ids]
            (gt / f"Labels_{concept}_{split}.txt").write_bytes(crlf(col).encode())
    full = ["C:\\ImageData\\Flickr\\" + i.replace("/", "\\") + ".jpg" for i in everything]
    (root / "ImageList" / "Imagelist.txt").write_bytes(crlf(full).encode())
    unlabelled = [i for i in splits["Test"] if not objects[i] and i not in missing]
    mini = Miniature("nuswide", root, root / "captions", splits, objects, sizes, paths, "Train", "Test", colours,
                     missing=missing, unlabelled=unlabelled)
    write_captions(mini, seed=seed)
    return mini


# ------------------------------------------------------------------------------------------------ captions
_BACKGROUND_PHRASES = {
    "grass": "on the grass", "sky": "under the sky", "room": "in a room", "road": "on the road",
    "building": "in front of a building", "wall": "against a wall", "field": "in a field", "water": "near the water",
    "ground": "on the ground", "river": "by the river", "cloud": "under the clouds", "tree": "next to a tree",
    "street": "in the street", "snow": "in the snow", "land": "on open land",
}
_NOISE = ["a blurry photo of", "an old picture of", "a close up of", "a picture showing", "an image of",
          "a photograph with", "there is"]
_TAILS = ["", "", " in the daytime", " with some text", " and something else", ", nice colours", " seen from afar"]


def _mention(rng: random.Random, vocab, name: str) -> str:
    syn = vocab.synonyms.get(name) or [name]
    word = rng.choice([name, *syn[:3]]) if rng.random() < 0.5 else syn[0]
    if word.endswith("s") or word in ("people", "geese", "oxen", "cattle"):
        return "some " + word
    return ("an " if word[0] in "aeiou" else "a ") + word


def _captions_for(iid: str, objs, size, vocab, seed: int, which: str) -> list[str]:
    "Six captions: large objects in most, small ones rarely, a background phrase sometimes, some noise words."
    # one background per image (the same in captions and re-captions), none whose word also names a class
    # (NUS-WIDE's 'building' is a synonym of its class 'buildings')
    class_words = {w for c in vocab.classes for w in vocab.synonyms[c]}
    bgs = [b for b in vocab.backgrounds if b in _BACKGROUND_PHRASES and b not in class_words]
    bg = _BACKGROUND_PHRASES[random.Random(f"{seed}:background:{iid}").choice(bgs)] if bgs else ""
    rng = random.Random(f"{seed}:{which}:{iid}")
    large = list(dict.fromkeys(o.name for o in objs if not is_small(o, size)))
    small = list(dict.fromkeys(o.name for o in objs if is_small(o, size)))
    small = [s for s in small if s not in large]
    caps = []
    for _ in range(6):
        named = [n for n in large if rng.random() < 0.85] + [n for n in small if rng.random() < 0.15]
        rng.shuffle(named)
        words = [_mention(rng, vocab, n) for n in named]
        if not words:
            words = [rng.choice(["a scene", "some shapes", "a colourful thing", "an object"])]
        body = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        text = f"{rng.choice(_NOISE)} {body}"
        if bg and rng.random() < 0.4:
            text += f" {bg}"
        caps.append(text + rng.choice(_TAILS))
    return caps


def write_captions(mini: Miniature, stem: str | None = None, seed: int = 0, split: str | None = None,
                   out_dir=None) -> tuple[Path, Path]:
    """`<out_dir>/<stem>_captions.json` and `<stem>_re_captions.json` (defaults: `mini.captions_dir`, the
    protocol), each one JSON object {"<image id>.": [six captions]} over exactly the ids of `split` (default the
    training split), in the one-line style of the released files. Deterministic in `seed`."""
    stem = stem or mini.protocol
    split = split or mini.train_split
    out = Path(out_dir) if out_dir is not None else mini.captions_dir
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_vocab(mini.protocol)
    paths = out / f"{stem}_captions.json", out / f"{stem}_re_captions.json"
    for p, which in zip(paths, ("captions", "re_captions")):
        d = {f"{i}.": _captions_for(i, mini.objects[i], mini.sizes[i], vocab, seed, which) for i in mini.splits[split]}
        p.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    return paths


# ------------------------------------------------------------------------------------------------ dispatch
_BUILDERS = dict(voc2007=make_voc2007, voc2012=make_voc2012, coco2014=make_coco2014, nuswide=make_nuswide)


def make_miniature(protocol: str, root, seed: int = 0) -> Miniature:
    "The miniature of `protocol` (one of `PROTOCOLS`) with its default image counts, written under `root`."
    if protocol not in _BUILDERS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    return _BUILDERS[protocol](root, seed=seed)
