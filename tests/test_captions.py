"""Tests of bacgcn.captions: the caption filter, pseudo labels, co-occurrence counts, file handling and the
quality of the pseudo labels on the authors' VOC2007 captions (found as tests/real_data.py says)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from bacgcn.captions import (CaptionConfig, CaptionFilter, PseudoLabels, align, cooccurrence, filter_captions_to_dir,
                             format_score, per_class_scores, pseudo_labels, read_caption_file, read_captions,
                             score_captions_files, score_pseudo_labels, tokenize, vocab_with_synonyms)
from bacgcn.config import as_config
from bacgcn.data import read_label_list
from bacgcn.vocab import Vocab, load_vocab
from real_data import real_file

VOC = load_vocab("voc2007")


def write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def voc_filter():
    return CaptionFilter(VOC)


# ---------------------------------------------------------------- the filter on hand-written captions

@pytest.mark.parametrize("text, expected", [
    ("Two geese and three sheep near the buses", {"bird", "sheep", "bus"}),                     # plurals
    ("the children's puppies", {"person", "dog"}),                                              # irregular plural, possessive
    ("a sailboat and a double-decker bus", {"boat", "bus"}),                                    # compound nouns
    ("Dinner at the dining table", {"diningtable"}),                                            # longest match
    ("a cat asleep on the coffee table", {"cat"}),                                              # stop phrase beats "table"
    ("a table with a laptop", set()),                                                           # bare table, no meal
    ("a table with plates of food and wine glasses", {"diningtable"}),                          # meal context
    ("a group of cyclists on a track", {"bicycle", "person"}),                                  # one phrase, two categories
    ("a jockey on a racehorse", {"horse", "person"}),
    ("a man riding a dirt bike", {"person", "motorbike"}),                                      # "dirt bike" before "bike"
    ("a motorcycle parked next to the bike shed", {"motorbike"}),                               # bike = the motorcycle
    ("a girl on her bike", {"person", "bicycle"}),
    ("car.  Question: What objects are present in this image, excluding car? Answer: car.", {"car"}),
    ('I\'m not sure what you mean by "exclude bicycle"', set()),                               # echo only
    ("The background of this image, excluding the aeroplane person, is the sky", {"sky"}),
    ("Please explain this photo in detail, excluding diningtable bottle person? Answer: a room", {"room"}),
    ("a dog, a couch, and a helmet valley dog person sofa", {"dog", "sofa"}),                   # run of label names
    ("a dog sleeping in the back seat of a car", {"dog"}),                                      # interior of a car
    ("a woman sitting in a car", {"person"}),
    ("a cat in a dog bed", {"cat"}),
    ("a couple of horses in a field", {"horse", "field"}),                                      # "couple of" is no person
    ("a tv show about a power plant", set()),
    ("a potted plant next to a flat screen tv", {"pottedplant", "tvmonitor"}),
    ("a car parked in the park", {"car", "field"}),                                             # parked is not park
])
def test_filter_hand_examples(voc_filter, text, expected):
    assert set(voc_filter.mentioned_names(text)) == expected


def test_mentions_are_deduplicated_in_first_mention_order(voc_filter):
    assert voc_filter.mentioned_names("a dog, a cat, a dog, a dog and a man with his dog") == ["dog", "cat", "person"]
    assert voc_filter.mentions("dogs, dogs, dogs") == {VOC.index("dog")}
    assert voc_filter.mentions("dog dog dog") == set()              # a bare run of label names is a prompt echo


def test_tokenize_singular_nouns_only():
    assert tokenize("Geese, mice, oxen, buses, tvs and children") == ["goose", "mouse", "oxen", "bus", "tv", "and", "child"]
    assert tokenize("parked dining wooden") == ["parked", "dining", "wooden"]   # never nouns: left alone
    assert tokenize("glasses") == ["glasses"]                                      # lexicalised plural kept


def test_stop_phrase_never_hides_a_synonym():
    v = Vocab("food", ["dog", "hot dog"], synonyms={"dog": ["dog"], "hot dog": ["hot dog"]})
    assert CaptionFilter(v).mentioned_names("two hot dogs") == ["hot dog"]
    assert CaptionFilter(VOC).mentioned_names("two hot dogs") == []
    coco = CaptionFilter("coco2014")
    assert set(coco.mentioned_names("a boy with a teddy bear eating a hot dog")) == {"person", "teddy bear", "hot dog"}


def test_naive_config_matches_exactly(voc_filter):
    naive = CaptionFilter(VOC, CaptionConfig.naive())
    text = "a dog in a car. Question: excluding person? Answer: a table"
    assert set(naive.mentioned_names(text)) == {"dog", "car", "person", "diningtable"}
    assert set(voc_filter.mentioned_names(text)) == {"dog"}


@pytest.mark.parametrize("name", ["voc2007", "voc2012", "coco2014", "nuswide"])
def test_builtin_vocabularies_compile(name):
    f = CaptionFilter(name)
    v = load_vocab(name)
    assert "person" in v.categories and f.mentioned_names("a man and a woman")[0] == "person"


def test_vocab_prompt_names_kept():
    assert [VOC.prompt_name(c) for c in ("diningtable", "tvmonitor", "pottedplant", "motorbike")] == \
        ["dining table", "tv", "potted plant", "motorbike"]
    assert not {"diningtable", "tvmonitor", "pottedplant"} & {s for c in VOC.classes for s in VOC.synonyms[c]}


# ---------------------------------------------------------------- pseudo labels, counts, round trip

TOY = {"a": ["a man and his dog on a sofa", "a dog on a couch", "the photo was taken in Paris"],
       "b": ["a man", "a man walking a dog", "a woman", "a girl under the sky"],
       "c": ["Paris", ""]}


def test_pseudo_labels_hand_example():
    pl = pseudo_labels(TOY, VOC)
    P, D, S, SKY = (VOC.index(c) for c in ("person", "dog", "sofa", "sky"))
    assert pl.image_ids == ["a", "b", "c"] and pl.soft.shape == (3, 44) and pl.soft.dtype == np.float32
    assert pl.hard.dtype == np.uint8 and pl.n_classes == 20
    assert pl.votes[:, [P, D, S, SKY]].tolist() == [[1, 2, 2, 0], [4, 1, 0, 1], [0, 0, 0, 0]]
    expected = np.zeros((3, 44), np.uint8)
    expected[0, [P, D, S]] = 1
    expected[1, [P, SKY]] = 1
    np.testing.assert_array_equal(pl.hard, expected)
    # soft = 0.9 share + 0.1 mean 1/(1 + rank), recomputed in float64
    np.testing.assert_allclose(pl.soft[0, [P, D, S]], [0.9 * 1 / 2 + 0.1 * (1 / 1) / 2,
                                                       0.9 * 2 / 2 + 0.1 * (1 / 2 + 1 / 1) / 2,
                                                       0.9 * 2 / 2 + 0.1 * (1 / 3 + 1 / 2) / 2], rtol=1e-6)
    np.testing.assert_allclose(pl.soft[1, [P, D, SKY]], [0.9 + 0.1, 0.9 * 0.25 + 0.1 * 0.5 / 4, 0.9 + 0.1 * 0.5], rtol=1e-6)
    assert pl.soft[2].max() == 0
    # N_k and N_kl counted image by image
    np.testing.assert_array_equal(pl.counts, sum(h.astype(int) for h in expected))
    np.testing.assert_array_equal(pl.pair_counts, sum(np.outer(h, h).astype(int) for h in expected))
    assert (pl.counts[P], pl.pair_counts[P, D], pl.pair_counts[D, S], pl.pair_counts[P, SKY], pl.pair_counts[D, SKY]) == (2, 1, 1, 1, 0)
    assert (np.diag(pl.pair_counts) == pl.counts).all() and (pl.pair_counts == pl.pair_counts.T).all()


def test_pseudo_label_rule_options():
    P, D = VOC.index("person"), VOC.index("dog")
    pl = pseudo_labels(TOY, VOC, {"min_votes": 2, "min_share": 0.0})
    assert pl.hard[0, [P, D]].tolist() == [0, 1] and pl.hard[1, [P, D]].tolist() == [1, 0]
    naive = pseudo_labels(TOY, VOC, CaptionConfig.naive())
    assert naive.hard[1, D] == 1
    np.testing.assert_allclose(naive.soft[0, [P, D]], [1 / 3, 2 / 3], rtol=1e-6)   # share of the non-empty captions
    np.testing.assert_allclose(naive.soft[2], 0)


def test_save_load_round_trip(tmp_path):
    pl = pseudo_labels(TOY, VOC)
    out = pl.save(tmp_path / "pl")
    assert sorted(p.name for p in out.iterdir()) == ["categories.json", "image_ids.txt", "pseudo_labels.npz", "summary.json"]
    back = PseudoLabels.load(out)
    assert (back.image_ids, back.categories, back.n_classes) == (pl.image_ids, pl.categories, pl.n_classes)
    for name in ("soft", "hard", "counts", "pair_counts", "votes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pl, name))
        assert getattr(back, name).dtype == getattr(pl, name).dtype
    assert back.config["min_share"] == 0.3 and back.config["vocab"] == "voc2007"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["counts"]["person"] == 2 and summary["images_without_class_labels"] == 1


def test_load_bad_folder(tmp_path):
    out = pseudo_labels(TOY, VOC).save(tmp_path / "pl")
    (out / "image_ids.txt").write_text("a\n")
    with pytest.raises(ValueError, match="image_ids.txt has 1 ids"):
        PseudoLabels.load(out)
    (out / "categories.json").unlink()
    with pytest.raises(FileNotFoundError, match="categories.json is missing"):
        PseudoLabels.load(out)


# ---------------------------------------------------------------- reading caption files: bad input

def test_read_captions_joins_files(tmp_path):
    c = write(tmp_path, "c.json", {"001.": ["a dog", "two dogs"], "002.": ["a cat", ""]})
    r = write(tmp_path, "r.json", {"002.": ["a cat on a sofa"], "001.": ["dog"]})
    caps = read_captions(c, r, expected=None)
    assert dict(caps) == {"001": ["a dog", "two dogs", "dog"], "002": ["a cat", "", "a cat on a sofa"]}
    assert caps.report["n_empty_captions"] == 1 and caps.report["n_captions"] == 6


def test_read_captions_invalid_json(tmp_path):
    with pytest.raises(ValueError, match=r"broken\.json: invalid JSON"):
        read_captions(write(tmp_path, "broken.json", '{"001.": ["a dog"'))


def test_read_captions_not_utf8(tmp_path):
    p = tmp_path / "latin.json"
    p.write_bytes('{"001.": ["caf\xe9"]}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.json: not UTF-8"):
        read_captions(p)


@pytest.mark.parametrize("obj, match", [({"007.": "a dog"}, "entry '007.' must be a list of strings"),
                                        ({"007.": ["a dog", 3]}, "entry '007.' must be a list of strings"),
                                        (["a dog"], "expected a JSON object"),
                                        ({"007.": ["a"], "007": ["b"]}, "same image id"),
                                        ('{"007.": ["a"], "007.": ["b"]}', "key '007.' appears twice")])
def test_read_captions_bad_entries(tmp_path, obj, match):
    with pytest.raises(ValueError, match=match) as e:
        read_captions(write(tmp_path, "caps.json", obj))
    assert "caps.json" in str(e.value)


def test_read_captions_missing_ids(tmp_path):
    c = write(tmp_path, "c.json", {"001.": ["a dog"], "002.": ["a cat"]})
    r = write(tmp_path, "r.json", {"001.": ["dog"], "003.": ["a bird"]})
    with pytest.raises(ValueError, match=r"1 ids only in .*c\.json \('002'\) and 1 ids only in .*r\.json \('003'\)"):
        read_captions(c, r, expected=None)
    with pytest.warns(UserWarning, match="dropped"):
        assert sorted(read_captions(c, r, missing="drop", expected=None)) == ["001"]
    with pytest.warns(UserWarning, match="kept"):
        kept = read_captions(c, r, missing="keep", expected=None)
    assert kept["002"] == ["a cat"] and kept["003"] == ["a bird"]
    assert (kept.report["only_in_captions"], kept.report["only_in_recaptions"]) == (["002"], ["003"])
    with pytest.raises(ValueError, match="missing must be"):
        read_captions(c, r, missing="ignore")


def test_caption_counts_other_than_six_are_reported(tmp_path):
    "An image with 1 caption and one with 13 were used without a word; now a warning names both."
    from bacgcn.captions import caption_count_problems
    six = [f"a dog {k}" for k in range(6)]
    c = write(tmp_path, "c.json", {"001.": six, "002.": ["a dog"], "003.": six * 2 + ["a cat"], "004.": six})
    r = write(tmp_path, "r.json", {"001.": six, "002.": six, "003.": six, "004.": six[:5]})
    assert caption_count_problems(c) == [("002", 1), ("003", 13)]
    assert caption_count_problems(r) == [("004", 5)]
    assert caption_count_problems({"001.": six, "002": six[:2]}) == [("002", 2)]
    assert caption_count_problems(c, expected=1) == [("001", 6), ("003", 13), ("004", 6)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        caps = read_captions(c, r)
    messages = sorted(str(w.message) for w in seen)
    assert len(messages) == 2 and all(w.category is UserWarning for w in seen)
    assert messages[0].startswith(f"{c}: 2 of 4 images have a number of captions other than the format's 6: "
                                  "'002' (1), '003' (13)")
    assert messages[1].startswith(f"{r}: 1 of 4 images have a number of captions other than the format's 6: '004' (5)")
    assert caps.report["wrong_counts"] == {str(c): [("002", 1), ("003", 13)], str(r): [("004", 5)]}
    assert len(caps["003"]) == 19                                      # still read: the counts are reported, not cut
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # expected=None: any count, no warning
        assert read_captions(c, r, expected=None).report["wrong_counts"] == {}
        assert read_captions(c, r, expected=None)["002"] == ["a dog"] + six
    many = write(tmp_path, "many.json", {f"{k:03d}.": six if k % 3 == 0 else six[:k % 3] for k in range(20)})
    with pytest.warns(UserWarning, match=r"13 of 20 images .*: '001' \(1\), '002' \(2\), '004' \(1\), '005' \(2\), "
                                         r"'007' \(1\) and 8 more"):
        read_captions(many)


def test_caption_counts_reach_the_score_and_filter_commands(tmp_path, capsys):
    "`bacgcn captions` (scoring and writing) reads through read_captions: the warning reaches the user."
    from bacgcn.cli import main
    P = VOC.index("person")
    c = write(tmp_path, "c.json", {"a.": ["a man"] * 6, "b.": ["a man"] * 13})
    lab = write(tmp_path, "gt.txt", f"a {P}\nb {P}\n")
    for argv in (["captions", "--captions", str(c), "--vocab", "voc2007", "--labels", str(lab)],
                 ["captions", "--captions", str(c), "--vocab", "voc2007", "--out", str(tmp_path / "out")]):
        with pytest.warns(UserWarning, match=r"c\.json: 1 of 2 images .* other than the format's 6: 'b' \(13\)"):
            assert main(argv) == 0


def test_read_captions_all_empty(tmp_path):
    c = write(tmp_path, "c.json", {"001.": ["a dog", ""], "002.": ["", "  "]})
    with pytest.raises(ValueError, match=r"1 images have only empty captions in .*c\.json: '002'"):
        read_captions(c, expected=None)
    caps = read_captions(c, allow_empty=True, expected=None)
    assert caps.report["images_all_empty"] == ["002"] and caps.report["n_empty_captions"] == 3
    pl = pseudo_labels(caps, VOC)
    assert pl.hard[1].sum() == 0 and pl.soft[1].sum() == 0


def test_read_captions_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_captions(tmp_path / "nope.json")


def test_config_errors():
    with pytest.raises(ValueError, match=r"unknown CaptionConfig fields \['minvotes'\]"):
        as_config(CaptionConfig, {"minvotes": 2})
    for bad, field in (({"min_votes": 0}, "min_votes"), ({"min_share": -0.1}, "min_share"),
                       ({"share_of": "twelve"}, "share_of"), ({"salience_weight": 1.0}, "salience_weight"),
                       ({"remove_patterns": ["(unclosed"]}, "remove_patterns"), ({"context_rules": {"table": "dinner"}},
                       "context_rules"), ({"context_rules": {"table": {"requires": "dinner"}}}, "context_rules"),
                       ({"context_rules": {"table": {"unless": ["dinner"]}}}, "context_rules")):
        with pytest.raises(ValueError, match=f"CaptionConfig.{field}"):
            as_config(CaptionConfig, bad)
    with pytest.raises(TypeError):
        as_config(CaptionConfig, ["min_votes", 2])


def test_word_lists_are_the_shipped_data_and_can_be_replaced():
    "The defaults come from bacgcn/assets/caption_rules.json (read as a file here, independently of the module)."
    rules = json.loads((Path(__file__).resolve().parents[1] / "bacgcn" / "assets" / "caption_rules.json").read_text())
    cfg = CaptionConfig()
    assert cfg.stop_phrases == [p for group in rules["stop_phrases"].values() for p in group] and "hot dog" in cfg.stop_phrases
    assert cfg.remove_patterns == [p for group in rules["remove_patterns"].values() for p in group]
    assert cfg.context_rules == rules["context_rules"] and "dinner" in cfg.context_rules["table"]["requires"]
    cfg.context_rules["table"]["requires"].append("desk")             # a config's lists are its own
    assert "desk" not in CaptionConfig().context_rules["table"]["requires"]
    # replacing a list changes what the filter does
    assert CaptionFilter(VOC).mentioned_names("a table with a laptop") == []
    assert CaptionFilter(VOC, {"context_rules": {}}).mentioned_names("a table with a laptop") == ["diningtable"]
    assert CaptionFilter(VOC, {"stop_phrases": []}).mentioned_names("a cat in a dog bed") == ["cat", "dog"]


def test_pseudo_labels_rejects_string_captions():
    with pytest.raises(ValueError, match="image 'x'"):
        pseudo_labels({"x": "a dog"}, VOC)


# ---------------------------------------------------------------- alignment and scoring

def test_align_report_and_strict():
    pl = pseudo_labels(TOY, VOC)
    sub, rep = align(pl, ["c", "a", "zz", "yy"])
    assert sub.image_ids == ["c", "a"]
    assert rep == dict(n_matched=2, n_without_captions=2, without_captions=["yy", "zz"], n_not_in_dataset=1,
                       not_in_dataset=["b"])
    assert sub.counts[VOC.index("person")] == 1 and sub.pair_counts[VOC.index("sky"), VOC.index("sky")] == 0
    with pytest.raises(ValueError, match=r"2 dataset images have no captions \('yy', 'zz'\); 1 captioned images are not in the dataset \('b'\)"):
        align(pl, ["c", "a", "zz", "yy"], strict=True)
    with pytest.raises(ValueError, match="no image has both"):
        align(pl, ["zz"])


def test_score_pseudo_labels_against_independent_computation():
    rng = np.random.default_rng(1)
    N, C, K = 60, 20, 44
    soft = rng.random((N, K)).astype(np.float32)
    hard = (soft > 0.6).astype(np.uint8)
    n, nn = cooccurrence(hard)
    pl = PseudoLabels([str(i) for i in range(N)], VOC.categories, soft, hard, n_classes=C)
    np.testing.assert_array_equal(pl.counts, n)
    Y = rng.integers(0, 2, (N, C)).astype(np.int8)
    Y[rng.random((N, C)) < 0.05] = -1
    Y[:, 3] = np.where(Y[:, 3] > 0, 0, Y[:, 3])                     # a class without positives
    res = score_pseudo_labels(pl, Y)
    valid, pos, H = Y >= 0, Y == 1, hard[:, :C] == 1
    tp, n_pred, n_pos = (H & pos).sum(), (H & valid).sum(), pos.sum()
    assert res["micro_p"] == pytest.approx(tp / n_pred) and res["micro_r"] == pytest.approx(tp / n_pos)
    assert res["micro_f1"] == pytest.approx(2 * tp / (n_pred + n_pos))
    has = pos.sum(0) > 0
    cp = (H & pos).sum(0) / np.maximum((H & valid).sum(0), 1)
    cr = (H & pos).sum(0)[has] / pos.sum(0)[has]
    assert res["macro_p"] == pytest.approx(cp[has].mean()) and res["macro_r"] == pytest.approx(cr.mean())
    aps = [average_precision_score(Y[valid[:, c], c], soft[valid[:, c], c]) for c in range(C) if has[c]]
    assert res["vote_map"] == pytest.approx(np.mean(aps), abs=1e-12)
    # the same ground truth as a dict {id: set}: -1 entries become negatives there
    as_dict = {str(i): set(np.flatnonzero(Y[i] == 1)) for i in range(N)}
    Y0 = np.where(Y < 0, 0, Y)
    assert score_pseudo_labels(pl, as_dict)["micro_r"] == pytest.approx(score_pseudo_labels(pl, Y0)["micro_r"])
    per_class = per_class_scores(pl, Y)
    np.testing.assert_array_equal(per_class["tp"], (H & pos).sum(0))


def test_score_with_a_dataset_like_object():
    class DS:                                                       # duck type of bacgcn.data.MultiLabelDataset
        image_ids = ["b", "a", "q"]
        labels = np.zeros((3, 20), np.int8)
    DS.labels[1, [VOC.index("person"), VOC.index("dog"), VOC.index("sofa")]] = 1
    DS.labels[0, VOC.index("person")] = 1
    res = score_pseudo_labels(pseudo_labels(TOY, VOC), DS())
    assert (res["n_images"], res["micro_p"], res["micro_r"]) == (2, 1.0, 1.0)


def test_score_captions_files_and_format(tmp_path):
    P, D, S = (VOC.index(c) for c in ("person", "dog", "sofa"))
    c = write(tmp_path, "c.json", {f"{k}.": v[:2] for k, v in TOY.items()})
    r = write(tmp_path, "r.json", {f"{k}.": v[2:] for k, v in TOY.items()})
    lab = write(tmp_path, "gt.txt", f"a {P} {D} {S}\nb {P} {D}\n\nz {P}\n")
    with pytest.warns(UserWarning, match="other than the format's 6") as seen:   # 2 or 1 captions, not 6
        res = score_captions_files(c, r, "voc2007", lab)
    assert {str(w.message).split(":")[0] for w in seen} == {str(c), str(r)}
    assert (res["n_images"], res["n_captioned_without_labels"], res["n_labelled_without_captions"]) == (2, 1, 1)
    assert res["micro_p"] == 1.0 and res["micro_r"] == pytest.approx(0.8)
    assert res["per_class"]["dog"] == dict(n_pos=2, n_pred=1, precision=1.0, recall=0.5, ap=1.0)
    assert res["per_class"]["cat"]["recall"] is None and res["config"]["min_share"] == 0.3
    json.dumps(res)                                                 # --json prints it
    text = format_score(res)
    assert "micro  P 1.000  R 0.800" in text and "dog" in text


def test_score_captions_files_names_a_bad_label_list(tmp_path):
    c = write(tmp_path, "c.json", {f"{k}.": (v * 6)[:6] for k, v in TOY.items()})
    with pytest.raises(ValueError, match=r"gt\.txt.*line 2: class index 25 out of range"):
        score_captions_files(c, None, "voc2007", write(tmp_path, "gt.txt", "a 3\nb 25\n"))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        score_captions_files(c, None, "voc2007", tmp_path / "nope.txt")


def test_filter_captions_to_dir(tmp_path):
    c = write(tmp_path, "c.json", {f"{k}.": (v * 6)[:6] for k, v in TOY.items()})
    out = filter_captions_to_dir(c, None, "voc2007", tmp_path / "out")
    adj = np.load(out / "adjacency.npy")
    assert adj.shape == (2 + 44, 2 + 44) and np.allclose(adj, adj.T)
    assert PseudoLabels.load(out).image_ids == ["a", "b", "c"]
    # the adjacency of the written hard labels' counts, with VOC's 20 classes told from its 24 backgrounds
    from bacgcn.graph import clip_gcn_adjacency
    hard = np.load(out / "pseudo_labels.npz")["hard"].astype(np.int64)
    np.testing.assert_allclose(adj, clip_gcn_adjacency(hard.sum(0), hard.T @ hard, n_classes=20).numpy())


def test_vocab_with_synonyms(tmp_path):
    p = write(tmp_path, "syn.json", {c: [c.upper()] for c in VOC.categories})
    v = vocab_with_synonyms(VOC, p)
    assert v.synonyms["diningtable"] == ["DININGTABLE"] and v.classes == VOC.classes
    with pytest.raises(ValueError, match="expected an object with 44 categories"):
        vocab_with_synonyms(VOC, write(tmp_path, "short.json", {"a": ["a"]}))


# ---------------------------------------------------------------- the real captions (tests/real_data.py)

@pytest.fixture(scope="module")
def voc_real():
    labels = real_file("labels", "voc2007_trainval_cls.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # six captions and six re-captions everywhere
        caps = read_captions(real_file("captions", "voc2007_captions.json"),
                             real_file("captions", "voc2007_re_captions.json"))
    return caps, {i: set(np.flatnonzero(y)) for i, y in zip(*_labels(labels))}


def _labels(path):
    "(ids, 0/1 rows) of a label list, read here with plain Python as the reference."
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    Y = np.zeros((len(rows), VOC.n_classes), np.int8)
    for r, (_, *idx) in enumerate(rows):
        Y[r, [int(k) for k in idx]] = 1
    return [row[0] for row in rows], Y


def test_real_voc2007_quality_target(voc_real):
    caps, gt = voc_real
    assert len(caps) == 5011 and caps.report["n_captions"] == 5011 * 12 and caps.report["wrong_counts"] == {}
    pl = pseudo_labels(caps, VOC)
    res = score_pseudo_labels(pl, gt)
    assert res["n_images"] == 5011
    assert res["micro_f1"] >= 0.86, res
    assert res["vote_map"] >= 0.83, res
    # vote-mAP is the mean of scikit-learn's average precision of the soft labels
    Y = np.zeros((len(pl), VOC.n_classes), np.int8)
    for r, iid in enumerate(pl.image_ids): Y[r, sorted(gt[iid])] = 1
    sk = np.mean([average_precision_score(Y[:, c], pl.soft[:, c]) for c in range(VOC.n_classes)])
    assert res["vote_map"] == pytest.approx(sk, abs=1e-12)
    # the held-out half (odd ids; the defaults were chosen on the even ids) meets the target too
    # the label list read by bacgcn.data gives the same scores as the reference dict
    assert score_pseudo_labels(pl, read_label_list(real_file("labels", "voc2007_trainval_cls.txt"), VOC.classes)) == res
    odd = score_pseudo_labels(align(pl, [i for i in pl.image_ids if int(i) % 2 == 1])[0], gt)
    assert odd["micro_f1"] >= 0.855 and odd["vote_map"] >= 0.83


def test_real_voc2007_naive_baseline(voc_real):
    caps, gt = voc_real
    naive_vocab = vocab_with_synonyms(VOC, real_file("vocab", "voc2007_synonyms.json"))
    res = score_pseudo_labels(pseudo_labels(caps, naive_vocab, CaptionConfig.naive()), gt)
    # reference figures of naive exact matching on these files, computed outside this package when they were
    # collected: micro P 0.757, R 0.821, F1 0.788, vote-mAP 0.774
    assert res["micro_p"] == pytest.approx(0.757, abs=0.005) and res["micro_f1"] == pytest.approx(0.788, abs=0.005)
    assert res["vote_map"] == pytest.approx(0.774, abs=0.005)
