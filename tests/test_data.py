"""Tests of bacgcn.data: every reader on tiny datasets written in the real on-disk formats, with label
matrices written out by hand; COCO cross-checked against pycocotools; VOC's default reading of difficult objects
checked against the protocols' (same labels, same AP); the real label lists (tests/real_data.py)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from bacgcn.data import (DATASETS, VOC_CLASSES, DataFormatError, MultiLabelDataset, Problem, as_items, check_layout,
                         load_dataset, read_coco, read_image_folder, read_label_list, read_nuswide, read_voc, voc_root)
from bacgcn.metrics import mean_average_precision
from bacgcn.protocols import load_split, resolve_data
from bacgcn.vocab import load_vocab
from real_data import real_file
from datasets_fixtures import write_coco, write_image, write_images, write_label_list, write_nuswide, write_voc



def rows(class_names, *images):
    "Label matrix from one {class name: value} dict per image (absent classes are 0)."
    y = np.zeros((len(images), len(class_names)), np.int8)
    for i, d in enumerate(images):
        for name, v in d.items(): y[i, class_names.index(name)] = v
    return y


# ---------------------------------------------------------------------------------------------- VOC
VOC_ANN = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("chair", 1), ("person", 0), ("chair", 1)],   # chair only through difficult objects
    "000003": [("cat", 1), ("cat", 0), ("sofa", None)],      # easy cat after a difficult one; sofa has no <difficult> tag
    "000004": [],                                            # no object at all
    "000005": [("boat", 1)],                                 # difficult only
}
VOC_SPLITS = {"trainval": list(VOC_ANN), "test": ["000004", "000002"]}
VOC_POSITIVE = rows(VOC_CLASSES, {"dog": 1, "person": 1}, {"chair": 1, "person": 1}, {"cat": 1, "sofa": 1}, {}, {"boat": 1})
VOC_IGNORE = rows(VOC_CLASSES, {"dog": 1, "person": 1}, {"chair": -1, "person": 1}, {"cat": 1, "sofa": 1}, {}, {"boat": -1})
VOC_NEGATIVE = rows(VOC_CLASSES, {"dog": 1, "person": 1}, {"person": 1}, {"cat": 1, "sofa": 1}, {}, {})


@pytest.fixture
def voc(tmp_path):
    return write_voc(tmp_path, VOC_ANN, VOC_SPLITS)


def test_voc_difficult_modes(voc):
    for mode, expected in [("positive", VOC_POSITIVE), ("ignore", VOC_IGNORE), ("negative", VOC_NEGATIVE)]:
        ds = read_voc(voc, difficult=mode)
        assert ds.labels.dtype == np.int8
        np.testing.assert_array_equal(ds.labels, expected, err_msg=mode)
    ds = read_voc(voc)  # the default: the devkit's "ignore"
    np.testing.assert_array_equal(ds.labels, VOC_IGNORE)
    assert ds.image_ids == list(VOC_ANN) and ds.class_names == VOC_CLASSES
    assert ds.image_paths[0] == voc / "JPEGImages" / "000001.jpg" and ds.image_paths[0].is_file()
    assert (ds.name, ds.split) == ("voc2007", "trainval")
    np.testing.assert_array_equal(ds.positives_per_class(), (VOC_IGNORE == 1).sum(0))
    np.testing.assert_array_equal(read_voc(voc, difficult="positive").positives_per_class(), VOC_POSITIVE.sum(0))


def test_voc_default_gives_the_protocols_labels_and_ap(tmp_path, voc):
    "AP computed through the package API (load_dataset, read_voc) is the AP of the voc2007 protocol a run reports."
    protocol = load_split(resolve_data("voc2007", tmp_path), "trainval")
    np.testing.assert_array_equal(protocol.labels, VOC_IGNORE)
    scores = np.random.default_rng(0).random(VOC_IGNORE.shape)
    reference = mean_average_precision(scores, protocol.labels)
    assert reference["excluded"] == [c for c in range(20) if not (VOC_IGNORE[:, c] == 1).any()]
    for ds in (load_dataset("voc2007", tmp_path, "trainval"), load_dataset("voc2007", tmp_path), read_voc(voc)):
        np.testing.assert_array_equal(ds.labels, protocol.labels)
        assert mean_average_precision(scores, ds.labels)["mAP"] == reference["mAP"]


def test_voc_other_split_keeps_split_file_order(voc):
    ds = read_voc(voc, "test", difficult="ignore")
    assert ds.image_ids == ["000004", "000002"]
    np.testing.assert_array_equal(ds.labels, VOC_IGNORE[[3, 1]])


def test_voc_root_forms(tmp_path, voc):
    for root in (voc, tmp_path / "VOCdevkit", tmp_path):
        assert voc_root(root) == voc
        np.testing.assert_array_equal(read_voc(root).labels, VOC_IGNORE)
    flat = write_voc(tmp_path / "flat", VOC_ANN, VOC_SPLITS, devkit=False)  # root/VOC2007 without VOCdevkit
    assert voc_root(tmp_path / "flat") == flat


def test_voc_several_years_need_year(tmp_path, voc):
    v12 = write_voc(tmp_path, {"2008_000001": [("horse", 0)]}, {"trainval": ["2008_000001"]}, year="2012")
    with pytest.raises(ValueError, match="several VOC folders"):
        read_voc(tmp_path)
    assert voc_root(tmp_path, 2012) == v12
    ds = load_dataset("voc2012", tmp_path)
    assert (ds.name, ds.image_ids, ds.image_paths[0].parents[1]) == ("voc2012", ["2008_000001"], v12)
    np.testing.assert_array_equal(ds.labels, rows(VOC_CLASSES, {"horse": 1}))
    np.testing.assert_array_equal(load_dataset("voc2007", tmp_path).labels, VOC_IGNORE)


def test_voc2012_segmentation_image_set(tmp_path):
    ann = {"2007_000032": [("aeroplane", 0), ("person", 1)], "2007_000039": [("tvmonitor", 0)]}
    v12 = write_voc(tmp_path, ann, {"train": ["2007_000039"], "val": ["2007_000032"]}, year="2012", image_set="Segmentation")
    ds = read_voc(v12, "val", image_set="Segmentation", difficult="ignore")
    assert ds.image_ids == ["2007_000032"] and ds.name == "voc2012"
    np.testing.assert_array_equal(ds.labels, rows(VOC_CLASSES, {"aeroplane": 1, "person": -1}))
    with pytest.raises(FileNotFoundError, match=str(v12 / "ImageSets" / "Main" / "val.txt")):
        read_voc(v12, "val")
    with pytest.raises(ValueError, match="image_set"):
        read_voc(v12, "val", image_set="Layouts")


def test_voc_custom_class_names(voc):
    names = ["person", "dog", "cat", "chair", "sofa", "boat"]
    ds = read_voc(voc, class_names=names)
    np.testing.assert_array_equal(ds.labels, VOC_IGNORE[:, [VOC_CLASSES.index(n) for n in names]])
    np.testing.assert_array_equal(read_voc(voc, class_names="voc2007").labels, VOC_IGNORE)  # vocabulary name
    np.testing.assert_array_equal(read_voc(voc, class_names=load_vocab("voc2007")).labels, VOC_IGNORE)  # Vocab


def test_voc_bad_input(voc):
    xml = voc / "Annotations" / "000003.xml"
    with pytest.raises(ValueError, match="unknown class name 'cat'") as e:
        read_voc(voc, class_names=["dog", "person", "chair", "sofa", "boat"])
    assert str(xml) in str(e.value)
    xml.write_text(xml.read_text().replace("<name>sofa</name>", "<name>couch</name>"))
    with pytest.raises(DataFormatError, match="unknown class name 'couch'") as e:
        read_voc(voc)
    assert e.value.path == xml
    xml.write_text("<annotation><object><name>cat</name>")  # truncated
    with pytest.raises(DataFormatError, match="malformed XML") as e:
        read_voc(voc)
    assert e.value.path == xml
    xml.write_text("<annotation><object><difficult>0</difficult></object></annotation>")
    with pytest.raises(DataFormatError, match="no <name>"):
        read_voc(voc)
    xml.write_text("<annotation><object><name>cat</name><difficult>yes</difficult></object></annotation>")
    with pytest.raises(DataFormatError, match="<difficult> of a 'cat' object is 'yes'"):
        read_voc(voc)
    xml.unlink()
    with pytest.raises(FileNotFoundError, match=str(xml)):
        read_voc(voc)
    with pytest.raises(FileNotFoundError, match=str(voc / "ImageSets" / "Main" / "val.txt")):
        read_voc(voc, "val")
    with pytest.raises(ValueError, match="difficult='maybe'"):
        read_voc(voc, difficult="maybe")
    (voc / "ImageSets" / "Main" / "dup.txt").write_text("000001\n000002\n000001\n")
    with pytest.raises(DataFormatError, match="dup.txt: image id '000001' is listed twice"):
        read_voc(voc, "dup")


def test_voc_not_a_voc_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "ImageSets" / "Main" / "trainval.txt")):
        read_voc(tmp_path)


# --------------------------------------------------------------------------------------------- COCO
COCO_CATS = [(18, "dog"), (1, "person"), (90, "toothbrush"), (2, "bicycle")]   # unsorted, ids with gaps
COCO_NAMES = ["person", "bicycle", "dog", "toothbrush"]                        # sorted by category id
COCO_IMAGES = [(42, "COCO_val2014_000000000042.jpg"), (9, "COCO_val2014_000000000009.jpg"),
               (5, "COCO_val2014_000000000005.jpg"), (73, "COCO_val2014_000000000073.jpg")]
COCO_ANNS = [(42, 1, 1), (42, 18, 0), (42, 18, 0), (9, 90, 0), (73, 1, 1)]    # 73: a crowd only; 5: nothing
COCO_KEPT = ["COCO_val2014_000000000009", "COCO_val2014_000000000042", "COCO_val2014_000000000073"]
COCO_LABELS = rows(COCO_NAMES, {"toothbrush": 1}, {"person": 1, "dog": 1}, {"person": 1})


@pytest.fixture
def coco(tmp_path):
    write_coco(tmp_path, "val2014", COCO_IMAGES, COCO_CATS, COCO_ANNS)
    return tmp_path


def test_coco_labels(coco):
    ds = read_coco(coco, "val2014")
    assert (ds.name, ds.split, ds.class_names, ds.image_ids) == ("coco2014", "val2014", COCO_NAMES, COCO_KEPT)
    np.testing.assert_array_equal(ds.labels, COCO_LABELS)
    assert ds.image_paths[1] == coco / "val2014" / "COCO_val2014_000000000042.jpg" and ds.image_paths[1].is_file()
    full = read_coco(coco, "val2014", labelled_only=False)
    assert full.image_ids == ["COCO_val2014_000000000005"] + COCO_KEPT
    np.testing.assert_array_equal(full.labels, np.vstack([np.zeros((1, 4), np.int8), COCO_LABELS]))
    assert read_coco(coco, "val2014", image_dir="elsewhere").image_paths[0] == coco / "elsewhere" / "COCO_val2014_000000000009.jpg"


def test_coco_matches_pycocotools(coco):
    from pycocotools.coco import COCO
    api = COCO(str(coco / "annotations" / "instances_val2014.json"))
    cat_ids = sorted(api.getCatIds())
    img_ids = sorted(api.getImgIds())
    ref = np.zeros((len(img_ids), len(cat_ids)), np.int8)
    for i, img in enumerate(img_ids):
        for a in api.loadAnns(api.getAnnIds(imgIds=[img], iscrowd=None)):
            ref[i, cat_ids.index(a["category_id"])] = 1
    ds = read_coco(coco, "val2014", labelled_only=False)
    np.testing.assert_array_equal(ds.labels, ref)
    assert ds.class_names == [c["name"] for c in api.loadCats(cat_ids)]


def test_coco_bad_input(coco):
    ann = coco / "annotations" / "instances_val2014.json"
    with pytest.raises(FileNotFoundError, match=str(coco / "annotations" / "instances_train2014.json")):
        read_coco(coco)
    good = json.loads(ann.read_text())
    for bad, msg in [({**good, "annotations": good["annotations"] + [dict(id=99, image_id=1234, category_id=1)]}, "image id 1234"),
                     ({**good, "annotations": good["annotations"] + [dict(id=99, image_id=9, category_id=77)]}, "category id 77"),
                     ({k: v for k, v in good.items() if k != "categories"}, "not a COCO instances file"),
                     ([1, 2], "not a COCO instances file"),
                     ({**good, "images": [{"id": 1}]}, "lacks the field 'file_name'")]:
        ann.write_text(json.dumps(bad))
        with pytest.raises(DataFormatError, match=msg) as e:
            read_coco(coco, "val2014")
        assert e.value.path == ann
    ann.write_text('{"images": [')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_coco(coco, "val2014")


# ----------------------------------------------------------------------------------------- NUS-WIDE
NUS_CONCEPTS = ["animal", "beach", "sky", "water"]
NUS_PATHS = ["actor/0001_2124494179.jpg", "beach/0002_35.jpg", "beach/0003_99.jpg"]
NUS_LABELS = rows(NUS_CONCEPTS, {"animal": 1}, {"beach": 1, "sky": 1, "water": 1}, {})


@pytest.fixture
def nus(tmp_path):
    return write_nuswide(tmp_path, "Train", NUS_CONCEPTS, NUS_PATHS, NUS_LABELS)


def test_nuswide_labels(nus):
    ds = read_nuswide(nus, "Train")
    assert ds.image_ids == ["actor/0001_2124494179", "beach/0002_35", "beach/0003_99"]
    assert (ds.name, ds.split, ds.class_names) == ("nuswide", "Train", NUS_CONCEPTS)
    np.testing.assert_array_equal(ds.labels, NUS_LABELS)
    assert ds.image_paths[0] == nus / "Flickr" / "actor" / "0001_2124494179.jpg" and ds.image_paths[0].is_file()
    assert read_nuswide(nus, "train", image_dir="images").image_paths[2] == nus / "images" / "beach" / "0003_99.jpg"
    np.testing.assert_array_equal(load_dataset("nuswide", nus).labels, NUS_LABELS)


def test_nuswide_labelled_only(nus):
    "The anchors score labelled images only: labelled_only keeps the images with at least one concept."
    kept = ["actor/0001_2124494179", "beach/0002_35"]
    ds = read_nuswide(nus, "Train", labelled_only=True)
    assert ds.image_ids == kept and ds.split == "Train"
    np.testing.assert_array_equal(ds.labels, NUS_LABELS[:2])
    assert load_dataset("nuswide", nus, labelled_only=True).image_ids == kept
    assert len(load_dataset("nuswide", nus)) == 3   # the default: the whole official list
    (nus / "Flickr" / "beach" / "0003_99.jpg").unlink()   # the unlabelled image's file
    assert check_layout("nuswide", nus, labelled_only=True) == []
    assert check_layout("nuswide", nus) == [Problem(nus / "Flickr" / "beach" / "0003_99.jpg", "1 of 3 image files missing (0003_99.jpg)")]


def test_nuswide_test_split(nus):
    write_nuswide(nus, "Test", NUS_CONCEPTS, ["zebra/0009_1.jpg"], [[1, 0, 0, 1]], images=False)
    ds = read_nuswide(nus, "Test")
    assert ds.image_ids == ["zebra/0009_1"]
    np.testing.assert_array_equal(ds.labels, [[1, 0, 0, 1]])


def test_nuswide_bad_input(nus):
    gt = nus / "Groundtruth" / "TrainTestLabels"
    with pytest.raises(ValueError, match="expected 'Train' or 'Test'"):
        read_nuswide(nus, "val")
    (gt / "Labels_sky_Train.txt").write_text("0\n1\n")
    with pytest.raises(DataFormatError, match="2 lines, but .*TrainImagelist.txt lists 3 images") as e:
        read_nuswide(nus)
    assert e.value.path == gt / "Labels_sky_Train.txt"
    (gt / "Labels_sky_Train.txt").write_text("0\n2\n1\n")
    with pytest.raises(DataFormatError, match="line 2: expected 0 or 1, got '2'"):
        read_nuswide(nus)
    (gt / "Labels_sky_Train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=str(gt / "Labels_sky_Train.txt")):
        read_nuswide(nus)
    (nus / "Concepts81.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"concept list not found: expected {nus / 'Concepts81.txt'}"):
        read_nuswide(nus)


# ------------------------------------------------------------------------------------- label lists
def test_label_list(tmp_path):
    p = tmp_path / "toy_cls.txt"
    p.write_text("000005 8\n000007 6\n\n000009 12 14\n000010\n000011 14 14\n")
    ds = read_label_list(p, VOC_CLASSES, image_root=tmp_path / "img", ext=".png")
    assert (ds.name, ds.image_ids) == ("toy_cls", ["000005", "000007", "000009", "000010", "000011"])
    np.testing.assert_array_equal(ds.labels, rows(VOC_CLASSES, {"chair": 1}, {"car": 1}, {"horse": 1, "person": 1}, {}, {"person": 1}))
    assert ds.image_paths[0] == tmp_path / "img" / "000005.png"
    assert read_label_list(p, "voc2007").image_paths == [None] * 5
    back = read_label_list(ds.to_label_list(tmp_path / "back.txt"), load_vocab("voc2007"))
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.image_ids == ds.image_ids


def test_label_list_bad_input(tmp_path):
    p = tmp_path / "bad.txt"
    for text, msg in [("a 0\nb 3\n", "line 2: class index 3 out of range 0..2"),
                      ("a -1\n", "line 1: class index -1 out of range"),
                      ("a 0\nb one\n", "line 2: class indices must be integers"),
                      ("a 0\nb 1\na 2\n", "line 3: image id 'a' already listed on line 1")]:
        p.write_text(text)
        with pytest.raises(ValueError, match=msg) as e:
            read_label_list(p, ["x", "y", "z"])
        assert str(p) in str(e.value)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.txt")):
        read_label_list(tmp_path / "nope.txt", ["x"])
    with pytest.raises(ValueError, match="given twice"):
        read_label_list(write_label_list(p, {"a": [0]}), ["x", "x"])


# ------------------------------------------------------------------------------------ image folders
def test_image_folder(tmp_path):
    write_images(tmp_path, ["b.png", "a.JPG", "c.webp", "d.bmp", "sub/e.jpeg", "sub/deeper/f.png", ".hidden.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    ds = read_image_folder(tmp_path)
    assert ds.image_ids == ["a", "b", "c", "d"] and ds.labels is None and "unlabelled" in repr(ds)
    assert ds.image_paths[0] == tmp_path / "a.JPG"
    rec = read_image_folder(tmp_path, recursive=True)
    assert rec.image_ids == ["a", "b", "c", "d", "sub/deeper/f", "sub/e"]
    from PIL import Image
    assert all(Image.open(p).size == (3, 2) for p in rec.image_paths)
    assert read_image_folder(tmp_path, exts=("png",)).image_ids == ["b"]
    assert load_dataset("folder", tmp_path, recursive=True).image_ids == rec.image_ids
    with pytest.raises(ValueError, match="unlabelled"):
        rec.to_label_list(tmp_path / "x.txt")


def test_image_folder_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        read_image_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        read_image_folder(tmp_path / "empty")
    write_images(tmp_path / "clash", ["x.jpg", "x.png"])
    with pytest.raises(DataFormatError, match="same image id 'x'"):
        read_image_folder(tmp_path / "clash")


# ------------------------------------------------------------------------------ the dataset object
def test_dataset_object():
    ds = MultiLabelDataset("t", ["a", "b", "c", "d"], ["a.jpg", None, "c.jpg", None],
                           np.array([[1, 0, -1], [0, 0, 0], [1, 1, 0], [0, -1, 1]]), ["x", "y", "z"], split="s")
    assert repr(ds) == "MultiLabelDataset('t', split='s', 4 images, 3 classes)"
    assert ds.labels.dtype == np.int8 and ds.image_paths[0] == Path("a.jpg") and len(ds) == 4
    np.testing.assert_array_equal(ds.positives_per_class(), [2, 1, 1])
    sub = ds.subset([3, 0])
    assert sub.image_ids == ["d", "a"] and (sub.name, sub.split, sub.class_names) == ("t", "s", ["x", "y", "z"])
    np.testing.assert_array_equal(sub.labels, [[0, -1, 1], [1, 0, -1]])
    assert ds.subset(ds.labels[:, 1] == 1).image_ids == ["c"]
    assert ds.subset([]).labels.shape == (0, 3)
    assert ds.select(["c", "b"]).image_ids == ["c", "b"]
    assert ds.items()[0] == ("a", Path("a.jpg"))
    sub.labels[0, 0] = 1  # a subset owns its labels
    assert ds.labels[3, 0] == 0
    with pytest.raises(KeyError, match="1 image ids are not in dataset 't'"):
        ds.select(["a", "zz"])
    with pytest.raises(ValueError, match="appears twice"):
        ds.subset([0, 0])
    with pytest.raises(ValueError, match="boolean mask"):
        ds.subset([True, False])
    with pytest.raises(TypeError, match="integers"):
        ds.subset([0.5])
    with pytest.raises(ValueError, match="2 image paths"):
        MultiLabelDataset("t", ["a"], [None, None])
    with pytest.raises(ValueError, match=r"expected \(1, 2\)"):
        MultiLabelDataset("t", ["a"], [None], np.zeros((1, 3)), ["x", "y"])
    with pytest.raises(ValueError, match="-1 \\(ignored\\)"):
        MultiLabelDataset("t", ["a"], [None], np.array([[0.5]]), ["x"])
    assert "4 images, 3 classes" in repr(ds)


def test_as_items(tmp_path, monkeypatch):
    "(id, absolute path or None) pairs from a dataset or from pairs; an empty input and repeated ids are refused."
    monkeypatch.chdir(tmp_path)
    ds = MultiLabelDataset("t", ["a", "b"], ["img/a.jpg", None])
    assert as_items(ds) == [("a", str(tmp_path / "img" / "a.jpg")), ("b", None)]
    assert as_items([(1, Path("~/x.png")), ("2", tmp_path / "y.png")]) == [
        ("1", str(Path.home() / "x.png")), ("2", str(tmp_path / "y.png"))]
    assert as_items(iter([("a", None)])) == [("a", None)]
    for empty in ([], MultiLabelDataset("e", [], [])):
        with pytest.raises(ValueError, match="no images"):
            as_items(empty)
    with pytest.raises(ValueError, match=r"duplicate image ids \['a'\]: every image needs its own id"):
        as_items([("a", None), ("b", None), ("a", "a.jpg")])
    many = [(i, None) for i in "abcdefg"] * 2
    with pytest.raises(ValueError, match=r"duplicate image ids \['a', 'b', 'c', 'd', 'e'\] \.\.\.:"):
        as_items(many)


def test_to_label_list_writes_positives_only(tmp_path):
    ds = MultiLabelDataset("t", ["a", "b"], [None, None], np.array([[1, -1, 1], [-1, 0, 0]]), ["x", "y", "z"])
    assert ds.to_label_list(tmp_path / "l.txt").read_text() == "a 0 2\nb\n"


def test_data_format_error_pickles():
    e = pickle.loads(pickle.dumps(DataFormatError("/x/y.xml", "broken")))
    assert (e.path, e.what, str(e)) == (Path("/x/y.xml"), "broken", "/x/y.xml: broken")


# ------------------------------------------------------------------------------------ load_dataset
def test_load_dataset_dispatch(tmp_path, voc, coco):
    assert DATASETS == ("voc2007", "voc2012", "coco2014", "nuswide", "labels", "folder")
    np.testing.assert_array_equal(load_dataset("voc2007", tmp_path, difficult="ignore").labels, VOC_IGNORE)
    assert load_dataset("voc2007", tmp_path, "test").image_ids == ["000004", "000002"]
    assert load_dataset("coco2014", coco, "val").image_ids == COCO_KEPT
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        load_dataset("coco2014", coco)
    lab = load_dataset("labels", write_label_list(tmp_path / "l.txt", {"a": [1]}), "val", class_names="voc2007")
    assert (lab.name, lab.split, lab.n_classes) == ("l", "val", 20)
    with pytest.raises(ValueError, match="needs class_names"):
        load_dataset("labels", tmp_path / "l.txt")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", tmp_path)


# ------------------------------------------------------------------------------------- check_layout
def test_check_layout_voc(tmp_path, voc):
    assert check_layout("voc2007", tmp_path) == []
    (voc / "JPEGImages" / "000002.jpg").unlink()
    (voc / "JPEGImages" / "000004.jpg").unlink()
    assert check_layout("voc2007", tmp_path) == [
        Problem(voc / "JPEGImages" / "000002.jpg", "2 of 5 image files missing (000002.jpg, 000004.jpg)")]
    assert check_layout("voc2007", voc, "val") == [Problem(voc / "ImageSets" / "Main" / "val.txt", "split file 'val' missing")]
    (voc / "Annotations" / "000003.xml").write_text("<annotation>")
    probs = check_layout("voc2007", voc)
    assert probs[0].path == voc / "Annotations" / "000003.xml" and "malformed XML" in probs[0].what
    (voc / "Annotations" / "000003.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    assert "unknown class name 'unicorn'" in check_layout("voc2007", voc)[0].what
    for f in ("000001", "000005"): (voc / "Annotations" / f"{f}.xml").unlink()
    assert check_layout("voc2007", voc) == [Problem(voc / "Annotations" / "000001.xml", "2 of 5 annotation files missing (000001.xml, 000005.xml)")]


def test_check_layout_voc_empty_root(tmp_path):
    probs = check_layout("voc2012", tmp_path / "nothing")
    base = tmp_path / "nothing"
    assert probs == [Problem(base / "Annotations", "folder missing"), Problem(base / "JPEGImages", "folder missing"),
                     Problem(base / "ImageSets" / "Main", "folder missing"),
                     Problem(base / "ImageSets" / "Main" / "trainval.txt", "split file 'trainval' missing")]


def test_check_layout_many_missing_images(tmp_path):
    ids = [f"{i:06d}" for i in range(7)]
    voc = write_voc(tmp_path, {i: [("cat", 0)] for i in ids}, {"trainval": ids}, images=False)
    assert check_layout("voc2007", voc) == [
        Problem(voc / "JPEGImages" / "000000.jpg", "7 of 7 image files missing (000000.jpg, 000001.jpg, 000002.jpg, 000003.jpg, 000004.jpg, ...)")]


def test_check_layout_coco(coco):
    assert check_layout("coco2014", coco, "val2014") == []
    (coco / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    assert check_layout("coco2014", coco, "val") == [
        Problem(coco / "val2014" / "COCO_val2014_000000000042.jpg", "1 of 3 image files missing (COCO_val2014_000000000042.jpg)")]
    assert check_layout("coco2014", coco, "train") == [Problem(coco / "train2014", "folder missing"),
                                                       Problem(coco / "annotations" / "instances_train2014.json", "annotation file missing")]
    (coco / "annotations" / "instances_val2014.json").write_text("[]")
    assert check_layout("coco2014", coco, "val")[0].what.startswith("not a COCO instances file")


def test_check_layout_nuswide(nus):
    assert check_layout("nuswide", nus, "Train") == []
    gt = nus / "Groundtruth" / "TrainTestLabels"
    (gt / "Labels_sky_Train.txt").write_text("1\n")
    assert check_layout("nuswide", nus) == [Problem(gt / "Labels_sky_Train.txt", f"1 lines, but {nus / 'ImageList' / 'TrainImagelist.txt'} lists 3 images")]
    (gt / "Labels_sky_Train.txt").unlink()
    assert check_layout("nuswide", nus) == [Problem(gt / "Labels_sky_Train.txt", "1 of 4 label files missing (Labels_sky_Train.txt)")]
    probs = check_layout("nuswide", nus, "test")
    assert probs == [Problem(nus / "ImageList" / "TestImagelist.txt", "file missing"),
                     Problem(gt / "Labels_animal_Test.txt", "4 of 4 label files missing (Labels_animal_Test.txt, Labels_beach_Test.txt, Labels_sky_Test.txt, Labels_water_Test.txt)")]


def test_check_layout_labels_and_folder(tmp_path):
    p = write_label_list(tmp_path / "l.txt", {"a": [0], "b": [5]})
    assert check_layout("labels", p, class_names=["x", "y"]) == [Problem(p, "line 2: class index 5 out of range 0..1 (2 classes)")]
    write_label_list(p, {"a": [0], "b": [1]})
    write_image(tmp_path / "img" / "a.jpg")
    assert check_layout("labels", p, class_names=["x", "y"], image_root=tmp_path / "img") == [
        Problem(tmp_path / "img" / "b.jpg", "1 of 2 image files missing (b.jpg)")]
    assert check_layout("labels", tmp_path / "none.txt", class_names=["x"]) == [Problem(tmp_path / "none.txt", "missing")]
    assert check_layout("folder", tmp_path / "img") == []
    (tmp_path / "empty").mkdir()
    assert check_layout("folder", tmp_path / "empty")[0].path == tmp_path / "empty"
    assert str(Problem(Path("/a/b"), "gone")) == "/a/b: gone"


# ------------------------------------------------------------------------------- real label lists
def _shared_labels(name: str) -> Path:
    return real_file("labels", name)


def _token_counts(path: Path, n_classes: int) -> np.ndarray:
    "Independent count of each class index in a label list."
    counts = np.zeros(n_classes, np.int64)
    for line in path.read_text().splitlines():
        for t in set(line.split()[1:]): counts[int(t)] += 1
    return counts


def test_real_voc2007_label_lists():
    vocab = load_vocab("voc2007")
    assert vocab.classes == VOC_CLASSES
    path = _shared_labels("voc2007_trainval_cls.txt")
    ds = read_label_list(path, vocab.classes)
    assert (len(ds), ds.n_classes, ds.name) == (5011, 20, "voc2007_trainval_cls")
    assert ds.image_ids[:3] == ["000005", "000007", "000009"]
    np.testing.assert_array_equal(ds.labels[:3], rows(VOC_CLASSES, {"chair": 1}, {"car": 1}, {"horse": 1, "person": 1}))
    np.testing.assert_array_equal(ds.positives_per_class(), _token_counts(path, 20))
    assert ds.positives_per_class()[VOC_CLASSES.index("person")] == 2095
    assert len(read_label_list(_shared_labels("voc2007_test_cls.txt"), vocab)) == 4952


def test_real_coco2014_val_label_list():
    vocab = load_vocab("coco2014")
    path = _shared_labels("coco2014_val_cls.txt")
    ds = read_label_list(path, vocab.classes)
    assert (len(ds), ds.n_classes) == (40137, 80)
    assert ds.image_ids[0] == "COCO_val2014_000000000042"
    assert [vocab.classes[c] for c in np.flatnonzero(ds.labels[0])] == ["dog"]
    assert [vocab.classes[c] for c in np.flatnonzero(ds.labels[2])] == ["person", "bicycle", "dog"]
    np.testing.assert_array_equal(ds.positives_per_class(), _token_counts(path, 80))
