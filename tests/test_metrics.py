"bacgcn.metrics against scikit-learn (AP, ties, ignored entries) and hand-worked F1 examples."
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from bacgcn.metrics import average_precision, difficult_conventions, evaluate, mean_average_precision, multilabel_f1


def _sklearn_ap(scores, targets):
    "Reference: sklearn per class on the non-ignored entries; nan without positives."
    out = []
    for c in range(scores.shape[1]):
        keep = targets[:, c] >= 0
        y, s = targets[keep, c], scores[keep, c]
        out.append(average_precision_score(y, s) if (y == 1).any() else np.nan)
    return np.array(out)


def _random_case(seed, n=60, c=7, decimals=None, p_ignore=0.0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < rng.uniform(0.1, 0.6, c)).astype(np.int8)
    scores = rng.normal(size=(n, c)) + 1.5 * targets           # informative but imperfect
    if decimals is not None: scores = np.round(scores, decimals)  # many ties
    if p_ignore: targets[rng.random((n, c)) < p_ignore] = -1
    targets[0, :] = 1                                            # at least one positive per class
    return scores, targets


@pytest.mark.parametrize("seed", range(40))
def test_ap_equals_sklearn_without_ties(seed):
    scores, targets = _random_case(seed)
    np.testing.assert_allclose(average_precision(scores, targets), _sklearn_ap(scores, targets), atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("decimals", [0, 1])
def test_ap_equals_sklearn_with_ties(seed, decimals):
    scores, targets = _random_case(seed, decimals=decimals)
    assert len(np.unique(scores[:, 0])) < len(scores)   # really tied
    np.testing.assert_allclose(average_precision(scores, targets), _sklearn_ap(scores, targets), atol=1e-9, rtol=0)


def test_ap_all_scores_tied_is_prevalence():
    targets = np.array([[1], [0], [0], [1], [0]])
    np.testing.assert_allclose(average_precision(np.ones((5, 1)), targets), [0.4], atol=1e-12)
    np.testing.assert_allclose(average_precision(np.ones((5, 1)), targets), _sklearn_ap(np.ones((5, 1)), targets), atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_ignored_entries_equal_sklearn_on_filtered_subset(seed):
    scores, targets = _random_case(seed, decimals=1, p_ignore=0.25)
    assert (targets == -1).any()
    np.testing.assert_allclose(average_precision(scores, targets), _sklearn_ap(scores, targets), atol=1e-9, rtol=0)
    # the ignored entries really are irrelevant: changing their scores changes nothing
    moved = scores.copy()
    moved[targets == -1] = np.random.default_rng(seed).normal(size=(targets == -1).sum()) * 10
    np.testing.assert_allclose(average_precision(moved, targets), average_precision(scores, targets), atol=1e-12)


def test_torch_inputs_accepted():
    torch = pytest.importorskip("torch")
    scores, targets = _random_case(0)
    np.testing.assert_allclose(average_precision(torch.tensor(scores, requires_grad=True), torch.tensor(targets)),
                               _sklearn_ap(scores, targets), atol=1e-9)


def test_class_without_positives_is_nan_and_excluded():
    scores, targets = _random_case(3, c=4)
    targets[:, 2] = 0
    targets[:5, 2] = -1          # ignored entries are not positives either
    r = mean_average_precision(scores, targets, class_names=["a", "b", "c", "d"])
    assert np.isnan(r["ap"][2]) and r["excluded"] == [2] and r["excluded_names"] == ["c"]
    ref = _sklearn_ap(scores, targets)
    assert r["mAP"] == pytest.approx(np.mean(ref[[0, 1, 3]]), abs=1e-9)
    none = mean_average_precision(scores, np.zeros_like(targets))
    assert np.isnan(none["mAP"]) and none["excluded"] == [0, 1, 2, 3]


def test_f1_at_threshold_by_hand():
    # images x classes; threshold 0.5 predicts
    #   [1 1 0]   [0 1 0]   [1 0 1]   (last one on an ignored entry)
    scores = np.array([[.9, .6, .1], [.2, .7, .4], [.8, .3, .55]])
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 0, -1]])
    # class 0: Nc=2 Np=2 Ng=2 -> P=1   R=1
    # class 1: Nc=1 Np=2 Ng=1 -> P=1/2 R=1
    # class 2: Nc=0 Np=0 Ng=1 -> P=0 (no prediction, ML-GCN convention) R=0
    # CP=(1+1/2+0)/3=1/2  CR=(1+1+0)/3=2/3  CF1=2*(1/2)*(2/3)/(1/2+2/3)=4/7
    # pooled Nc=3 Np=4 Ng=4 -> OP=OR=OF1=3/4
    r = multilabel_f1(scores, targets, threshold=0.5)
    assert r == pytest.approx(dict(CP=1 / 2, CR=2 / 3, CF1=4 / 7, OP=3 / 4, OR=3 / 4, OF1=3 / 4), abs=1e-12)


def test_f1_top_k_by_hand():
    scores = np.array([[.9, .6, .1, .0], [.2, .7, .4, .3], [.8, .3, .55, .9]])
    targets = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
    # top-2 per image: {0,1}, {1,2}, {3,0}
    # class 0: Nc=2 (img0,img2) Np=2 Ng=2 -> P=1 R=1
    # class 1: Nc=2 (img0,img1) Np=2 Ng=2 -> P=1 R=1
    # class 2: Nc=1 (img1)      Np=1 Ng=1 -> P=1 R=1
    # class 3: Nc=1 (img2)      Np=1 Ng=1 -> P=1 R=1   -> everything 1
    assert multilabel_f1(scores, targets, top_k=2) == pytest.approx(dict(CP=1, CR=1, CF1=1, OP=1, OR=1, OF1=1))
    # top-1: img0 -> 0 (pos), img1 -> 1 (pos), img2 -> 3 (pos)
    # class 0: Nc=1 Np=1 Ng=2 -> P=1 R=1/2; class 1: Nc=1 Np=1 Ng=2 -> P=1 R=1/2
    # class 2: Nc=0 Np=0 Ng=1 -> P=0 R=0;   class 3: Nc=1 Np=1 Ng=1 -> P=1 R=1
    # CP=3/4 CR=(1/2+1/2+0+1)/4=1/2 CF1=2*(3/4)(1/2)/(5/4)=3/5
    # OP=3/3=1 OR=3/6=1/2 OF1=2*(1/2)/(3/2)=2/3
    r = multilabel_f1(scores, targets, top_k=1)
    assert r == pytest.approx(dict(CP=3 / 4, CR=1 / 2, CF1=3 / 5, OP=1, OR=1 / 2, OF1=2 / 3), abs=1e-12)
    # ML-GCN's overall_topk: top-k AND above the threshold. top-2 with threshold 0.5 keeps
    # img0 {0,1}, img1 {1} (0.4 fails), img2 {3,0} -> class 2 loses its only prediction:
    # P = (1,1,0,1), R = (1,1,0,1): CP=CR=CF1=3/4; Nc=5 Np=5 Ng=6: OP=1 OR=5/6 OF1=10/11
    r = multilabel_f1(scores, targets, threshold=0.5, top_k=2)
    assert r == pytest.approx(dict(CP=3 / 4, CR=3 / 4, CF1=3 / 4, OP=1, OR=5 / 6, OF1=10 / 11), abs=1e-12)


def test_f1_class_without_positives_left_out_of_class_averages():
    scores = np.array([[.9, .8], [.1, .7]])
    targets = np.array([[1, 0], [0, 0]])
    # class 1 has no positive -> excluded from CP/CR; its 2 false positives still count in OP
    # class 0: P=1 R=1 -> CP=CR=1; pooled Nc=1 Np=3 Ng=1 -> OP=1/3 OR=1 OF1=1/2
    r = multilabel_f1(scores, targets)
    assert r == pytest.approx(dict(CP=1, CR=1, CF1=1, OP=1 / 3, OR=1, OF1=1 / 2), abs=1e-12)


def test_evaluate_combines_everything():
    scores, targets = _random_case(5, decimals=1, p_ignore=0.1)
    r = evaluate(scores, targets, class_names=[f"c{i}" for i in range(7)], threshold=0.5, top_k=3)
    assert r["mAP"] == pytest.approx(np.nanmean(_sklearn_ap(scores, targets)), abs=1e-9)
    for k, v in multilabel_f1(scores, targets, threshold=0.5).items(): assert r[k] == v
    for k, v in multilabel_f1(scores, targets, top_k=3).items(): assert r[f"{k}_top3"] == v
    assert set(r["per_class"]) == {f"c{i}" for i in range(7)}


@pytest.mark.parametrize("scores,targets,match", [
    (np.zeros((3, 2)), np.zeros((3, 3)), "shape mismatch"),
    (np.zeros((3, 2)), np.zeros((2, 2)), "shape mismatch"),
    (np.zeros(3), np.zeros(3), r"\(N, C\)"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "no rows"),
    (np.array([[0.1, np.nan]]), np.array([[1, 0]]), r"non-finite.*\[0, 1\]"),
    (np.array([[0.1, np.inf]]), np.array([[1, 0]]), "non-finite"),
    (np.array([[0.1, 0.2]]), np.array([[1, 2]]), r"-1 \(ignored\), 0 or 1.*\[0, 1\]"),
    (np.array([[0.1, 0.2]]), np.array([[0.5, 1]]), "0 or 1"),
    (np.array([[0.1, 0.2]]), np.array([[np.nan, 1]]), "0 or 1"),
])
def test_bad_inputs_raise_clear_errors(scores, targets, match):
    for f in (average_precision, mean_average_precision, multilabel_f1, evaluate):
        with pytest.raises(ValueError, match=match): f(scores, targets)


def test_bad_options_raise():
    scores, targets = _random_case(0, c=3)
    with pytest.raises(ValueError, match="top_k"): multilabel_f1(scores, targets, top_k=0)
    with pytest.raises(ValueError, match="top_k"): multilabel_f1(scores, targets, top_k=4)
    with pytest.raises(ValueError, match="top_k"): multilabel_f1(scores, targets, top_k=1.5)
    with pytest.raises(ValueError, match="threshold"): multilabel_f1(scores, targets, threshold=np.nan)
    with pytest.raises(ValueError, match="class_names"): mean_average_precision(scores, targets, ["a"])
    with pytest.raises(TypeError, match="numeric"): average_precision(np.array([["a"]]), np.array([[1]]))


# ------------------------------------------------------------------ VOC2007's three difficult conventions
def _sklearn_map(scores, targets, convention):
    "Reference mAP: -1 entries dropped (ignore), made 1 (positive) or 0 (negative), then sklearn per class."
    aps = []
    for c in range(scores.shape[1]):
        y, s = targets[:, c], scores[:, c]
        if convention == "ignore":
            y, s = y[y >= 0], s[y >= 0]
        else:
            y = np.where(y == -1, 1 if convention == "positive" else 0, y)
        if (y == 1).any():
            aps.append(average_precision_score(y, s))
    return np.mean(aps), aps


def test_difficult_conventions_by_hand():
    # one class, four images ranked by score; image 1 holds only a difficult object (ranked 2nd)
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[1], [-1], [0], [1]])
    r = difficult_conventions(scores, labels)
    assert set(r) == {"ignore", "positive", "negative"}
    np.testing.assert_allclose([r[k]["mAP"] for k in ("ignore", "positive", "negative")], [5 / 6, 11 / 12, 3 / 4])
    # the same difficult image ranked last: positive falls below ignore, negative equals it
    r = difficult_conventions(np.array([[0.9], [0.6], [0.8], [0.7]]), labels)
    np.testing.assert_allclose([r[k]["mAP"] for k in ("ignore", "positive", "negative")], [5 / 6, 29 / 36, 5 / 6])


def test_difficult_conventions_equal_sklearn():
    # hand-built VOC-like labels: class 0 has a difficult-only image above its positives, class 1 below them,
    # class 2 is present only as difficult objects (no AP under ignore and negative), class 3 has none
    labels = np.array([[1, 0, -1, 0],
                       [-1, 1, 0, 0],
                       [0, 0, 0, 1],
                       [1, 1, -1, 0],
                       [0, -1, 0, 1],
                       [-1, 0, 0, 0]])
    scores = np.array([[0.2, 0.1, 0.8, 0.3],
                       [0.9, 0.7, 0.1, 0.2],
                       [0.4, 0.3, 0.2, 0.9],
                       [0.7, 0.8, 0.3, 0.1],
                       [0.1, 0.05, 0.4, 0.6],
                       [0.8, 0.2, 0.5, 0.4]])
    names = ["dog", "cat", "bird", "sheep"]
    r = difficult_conventions(scores, labels, names)
    for convention in ("ignore", "positive", "negative"):
        m, aps = _sklearn_map(scores, labels, convention)
        assert r[convention]["mAP"] == pytest.approx(m, abs=1e-12), convention
        np.testing.assert_allclose(r[convention]["ap"][~np.isnan(r[convention]["ap"])], aps, atol=1e-12)
    assert r["ignore"]["excluded_names"] == r["negative"]["excluded_names"] == ["bird"]
    assert r["positive"]["excluded"] == []
    assert r["ignore"]["mAP"] == mean_average_precision(scores, labels)["mAP"]   # the headline is `ignore`
    m = {k: v["mAP"] for k, v in r.items()}
    assert len({round(v, 9) for v in m.values()}) == 3   # three different numbers from the same scores


@pytest.mark.parametrize("seed", range(20))
def test_difficult_conventions_random_against_sklearn(seed):
    scores, targets = _random_case(seed, p_ignore=0.15)
    r = difficult_conventions(scores, targets)
    for convention in ("ignore", "positive", "negative"):
        assert r[convention]["mAP"] == pytest.approx(_sklearn_map(scores, targets, convention)[0], abs=1e-9)
    # an extra negative can only lower the precision at the positives ranked below it
    assert np.all(r["negative"]["ap"] <= r["ignore"]["ap"] + 1e-12)
