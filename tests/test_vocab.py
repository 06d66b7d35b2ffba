"Built-in vocabularies agree with the datasets' own label orders and with the authors' category lists."
import json
from pathlib import Path

import pytest

from bacgcn.vocab import Vocab, load_vocab
from real_data import real_file

# names that differ between the datasets' official files and the authors' synonym files
ALIASES = {"motor bike": "motorbike", "dining table": "diningtable", "potted plant": "pottedplant", "tvmonitor": "tvmonitor"}
COCO_ALIASES = {"motor bike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "tvmonitor": "tv"}


def _authors(name):
    return list(json.loads(real_file("vocab", f"{name}_synonyms.json").read_text()))


@pytest.mark.parametrize("name,aliases", [("voc2007", ALIASES), ("coco2014", COCO_ALIASES), ("nuswide", {})])
def test_category_order_matches_authors_files(name, aliases):
    v = load_vocab(name)
    theirs = [aliases.get(c, c) for c in _authors(name)]
    assert v.categories == theirs


def test_voc_label_indices_follow_alphabetical_order():
    # 000005 has chairs only (index 8), 000007 a car (6) in VOC2007 trainval
    lines = dict(l.split(" ", 1) for l in real_file("labels", "voc2007_trainval_cls.txt").read_text().splitlines()[:2])
    v = load_vocab("voc2007")
    assert v.classes[int(lines["000005"])] == "chair" and v.classes[int(lines["000007"])] == "car"
    assert v.classes == sorted(v.classes)


def test_every_category_has_itself_or_a_phrase_and_templates_have_slots():
    for name in ["voc2007", "coco2014", "nuswide"]:
        v = load_vocab(name)
        assert all(v.synonyms[c] and all(s.strip() == s and s for s in v.synonyms[c]) for c in v.categories)
        assert all(t.count("{}") == 1 for t in v.templates)


def test_custom_vocab_errors_name_the_file(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text('{"classes": ["a", "b"], "synonyms": {"c": ["x"]}}')
    with pytest.raises(ValueError, match="mine.json.*unknown categories"):
        load_vocab(p)
    p.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="mine.json.*UTF-8 JSON"):
        load_vocab(p)
    p.write_text('{"name": "mine", "classes": ["a", "b"], "backgrounds": ["sky"]}')
    v = load_vocab(p)
    assert isinstance(v, Vocab) and v.categories == ["a", "b", "sky"] and v.templates == ["a photo of a {}."]
