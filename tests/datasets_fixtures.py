"""Builders of tiny datasets in each real on-disk format (VOC, COCO, NUS-WIDE, label lists, image folders).

Each writes into a folder given by the caller (pytest's `tmp_path`) and returns the path a reader takes.
Images are real, tiny files made with PIL so that image readers can open them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# what a run folder holds: `bacgcn.pipeline.run_experiment`'s files (ReSO on), and what the run notebook adds
RUN_FILES = ("run.json", "experiment.json", "metrics.json", "history.json", "per_class_ap.csv", "model.pt",
             "checkpoint.pt", "alignment.txt", "reso/regions.json")  # fmt: skip
NOTEBOOK_FILES = ("run.ipynb", "figures/map_per_epoch_and_per_class_ap.png", "figures/similarity_maps.png",
                  "figures/masking.png")  # fmt: skip


def missing_run_files(out: Path, names=RUN_FILES + NOTEBOOK_FILES) -> list[str]:
    "The files of `names` that are not a non-empty file under the run folder `out`."
    return [n for n in names if not ((out / n).is_file() and (out / n).stat().st_size > 0)]


_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}


def write_image(path: Path, size=(3, 2), color=(200, 30, 30)) -> Path:
    "A tiny RGB image, format from the extension."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=_PIL_FORMATS[path.suffix.lower()])
    return path


def write_images(folder: Path, names) -> list[Path]:
    "Tiny images `folder/<name>` for each name (subfolders allowed)."
    return [write_image(Path(folder) / n) for n in names]


def voc_xml(image_id: str, objects, parts: bool = True) -> str:
    """A VOC annotation in the devkit's layout. `objects` are (name, difficult) pairs; difficult may be None
    to leave the <difficult> tag out (as in some VOC2012 files). Each person gets a <part> named 'head',
    which a reader must not mistake for an object."""
    objs = []
    for name, difficult in objects:
        diff = "" if difficult is None else f"\n\t\t<difficult>{int(difficult)}</difficult>"
        part = "\n\t\t<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>" \
            if parts and name == "person" else ""
        objs.append(f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>{diff}"
                    f"\n\t\t<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>2</ymax></bndbox>{part}\n\t</object>\n")
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<size><width>3</width><height>2</height><depth>3</depth></size>\n\t<segmented>0</segmented>\n"
            + "".join(objs) + "</annotation>\n")


def write_voc(root: Path, annotations: dict, splits: dict, year: str = "2007", image_set: str = "Main",
              devkit: bool = True, images: bool = True) -> Path:
    """A VOC year folder under `root` (`root/VOCdevkit/VOC<year>`, or `root/VOC<year>` when not `devkit`).
    `annotations`: image id -> list of (class name, difficult); `splits`: split name -> list of ids.
    Returns the year folder."""
    voc = Path(root) / ("VOCdevkit" if devkit else "") / f"VOC{year}"
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / image_set).mkdir(parents=True, exist_ok=True)
    for image_id, objects in annotations.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, objects))
        if images: write_image(voc / "JPEGImages" / f"{image_id}.jpg")
    (voc / "JPEGImages").mkdir(exist_ok=True)
    for split, ids in splits.items():
        (voc / "ImageSets" / image_set / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def write_coco(root: Path, split: str, images, categories, annotations, images_on_disk: bool = True) -> Path:
    """A COCO instances file `root/annotations/instances_<split>.json` and images in `root/<split>/`.
    `images`: (image id, file name); `categories`: (category id, name); `annotations`: (image id, category id,
    iscrowd). Returns the JSON path."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    d = dict(info={"description": "toy"}, licenses=[],
             images=[dict(id=i, file_name=f, width=3, height=2) for i, f in images],
             categories=[dict(id=c, name=n, supercategory="thing") for c, n in categories],
             annotations=[dict(id=k + 1, image_id=i, category_id=c, iscrowd=crowd, area=4.0, bbox=[0, 0, 2, 2],
                               segmentation=[[0, 0, 2, 0, 2, 2]] if not crowd else {"counts": [0, 6], "size": [2, 3]})
                          for k, (i, c, crowd) in enumerate(annotations)])
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(d))
    if images_on_disk: write_images(root / split, [f for _, f in images])
    return path


def write_nuswide(root: Path, split: str, concepts, rel_paths, labels, images: bool = True,
                  image_dir: str = "Flickr") -> Path:
    """The NUS-WIDE release layout: `Concepts81.txt`, `ImageList/<split>Imagelist.txt` (Windows paths, CRLF),
    `Groundtruth/TrainTestLabels/Labels_<concept>_<split>.txt`. `rel_paths` use '/' and are written with '\\'.
    `labels`: (N, C) 0/1. Returns `root`."""
    root = Path(root)
    labels = np.asarray(labels)
    gt = root / "Groundtruth" / "TrainTestLabels"
    gt.mkdir(parents=True, exist_ok=True)
    (root / "ImageList").mkdir(exist_ok=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in concepts))
    (root / "ImageList" / f"{split}Imagelist.txt").write_text("".join(p.replace("/", "\\") + "\r\n" for p in rel_paths))
    for c, concept in enumerate(concepts):
        (gt / f"Labels_{concept}_{split}.txt").write_text("".join(f"{int(v)}\n" for v in labels[:, c]))
    if images: write_images(root / image_dir, rel_paths)
    return root


def write_label_list(path: Path, rows: dict) -> Path:
    "One line per image: `<id> <class index> ...`; `rows`: image id -> list of indices."
    path = Path(path)
    path.write_text("".join(" ".join([i, *map(str, idx)]) + "\n" for i, idx in rows.items()))
    return path
