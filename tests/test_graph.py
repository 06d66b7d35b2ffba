"bacgcn.graph: hand-worked graphs, a loop-based float64 reference, edge cases and bad input."
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from bacgcn.graph import (EDGES, Edge, GraphConfig, binarize, check_counts, clip_gcn_adjacency,
                          conditional_probabilities, count_cooccurrences, normalize_symmetric,
                          plot_class_background_heatmap, reweight, top_conditionals)
from bacgcn.vocab import Vocab

# Ten images, categories person (0), dog (1) (classes), grass (2) (a background):
#   N = (8, 4, 5); N_person,dog = 3, N_person,grass = 4, N_dog,grass = 2
COUNTS = np.array([8, 4, 5])
PAIRS = np.array([[8, 3, 4], [3, 4, 2], [4, 2, 5]])
# P(j|i) = N_ij / N_i, diagonal 0
P_HAND = np.array([[0, 3 / 8, 4 / 8],
                   [3 / 4, 0, 2 / 4],
                   [4 / 5, 2 / 5, 0]])
# t = 0.4: keep P >= 0.4 (P(dog|grass) = 0.4 is kept)
A_HAND = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 0]])
# p = 0.25: person has 1 neighbour -> 0.25, dog and grass 2 -> 0.125 each; diagonal 0.75
AP_HAND = np.array([[.75, 0, .25], [.125, .75, .125], [.125, .125, .75]])
# (A' + A'^T) / 2
AS_HAND = np.array([[.75, .0625, .1875], [.0625, .75, .125], [.1875, .125, .75]])
# row sums 1, 15/16, 17/16 -> D^{-1/2} A^s D^{-1/2}
_s15, _s17 = np.sqrt(15), np.sqrt(17)
NORM_HAND = np.array([[.75, 1 / (4 * _s15), 3 / (4 * _s17)],
                      [1 / (4 * _s15), .8, 2 / np.sqrt(255)],
                      [3 / (4 * _s17), 2 / np.sqrt(255), 12 / 17]])
# CLIP-GCN, nodes [gH, gHc, person, dog, grass], global_weight 1:
#   global rows [1 0 1 1 1] / [0 1 1 1 1] -> degree 4
#   local rows: 1 + 1 + A^s row -> degrees 3, 47/16, 49/16 (sqrt = sqrt(3), sqrt(47)/4, 7/4)
#   g-g: 1/4; g-person 1/sqrt(12); g-dog 1/sqrt(4*47/16) = 2/sqrt(47); g-grass 1/(2*7/4) = 2/7
#   person-person .75/3 = 1/4; person-dog (1/16)/sqrt(3*47/16) = 1/(4 sqrt(141));
#   person-grass (3/16)/(sqrt(3)*7/4) = 3/(28 sqrt(3)); dog-dog .75*16/47 = 12/47;
#   dog-grass (1/8)/(sqrt(47)/4*7/4) = 2/(7 sqrt(47)); grass-grass .75*16/49 = 12/49
_g = [1 / np.sqrt(12), 2 / np.sqrt(47), 2 / 7]
CLIP_HAND = np.array([
    [1 / 4, 0, *_g],
    [0, 1 / 4, *_g],
    [_g[0], _g[0], 1 / 4, 1 / (4 * np.sqrt(141)), 3 / (28 * np.sqrt(3))],
    [_g[1], _g[1], 1 / (4 * np.sqrt(141)), 12 / 47, 2 / (7 * np.sqrt(47))],
    [_g[2], _g[2], 3 / (28 * np.sqrt(3)), 2 / (7 * np.sqrt(47)), 12 / 49]])


def test_hand_worked_three_categories():
    P = conditional_probabilities(COUNTS, PAIRS)
    np.testing.assert_allclose(P, P_HAND, atol=1e-15)
    np.testing.assert_array_equal(binarize(P, 0.4), A_HAND)
    np.testing.assert_allclose(reweight(A_HAND, 0.25), AP_HAND, atol=1e-15)
    np.testing.assert_allclose(normalize_symmetric(AS_HAND), NORM_HAND, atol=1e-15)
    ml = clip_gcn_adjacency(P, n_classes=2, n_global=0, config=dict(t=0.4, p=0.25), dtype=torch.float64).numpy()
    np.testing.assert_allclose(ml, NORM_HAND, atol=1e-15)       # no global node: ML-GCN's graph over the categories
    G = clip_gcn_adjacency(COUNTS, PAIRS, n_classes=2, n_global=2, dtype=torch.float64).numpy()
    np.testing.assert_allclose(G, CLIP_HAND, atol=1e-15)
    # one background: no background-background pair, so the paper's edge set and "all" agree
    np.testing.assert_allclose(clip_gcn_adjacency(COUNTS, PAIRS, config={"edges": "all"}, dtype=torch.float64).numpy(),
                               CLIP_HAND, atol=1e-15)


def test_float32_default_and_P_argument():
    G = clip_gcn_adjacency(COUNTS, PAIRS, n_classes=2)
    assert G.dtype == torch.float32
    np.testing.assert_allclose(G.numpy(), CLIP_HAND, atol=1e-7)
    np.testing.assert_allclose(clip_gcn_adjacency(P_HAND, n_classes=2, dtype=torch.float64).numpy(), CLIP_HAND,
                               atol=1e-15)


def _random_counts(seed, n_images=80, K=9, zero=()):
    rng = np.random.default_rng(seed)
    L = (rng.random((n_images, K)) < rng.uniform(0.05, 0.5, K)).astype(np.int64)
    L[:, list(zero)] = 0
    return L


def _reference(L, t, p, n_global, w, edges="all", n_classes=None):
    "Loop-by-loop float64 recomputation from the image-level mention matrix."
    n_img, K = L.shape
    N = [sum(L[a, i] for a in range(n_img)) for i in range(K)]
    NN = [[sum(L[a, i] * L[a, j] for a in range(n_img)) for j in range(K)] for i in range(K)]
    P = [[(NN[i][j] / N[i] if N[i] > 0 and i != j else 0.0) for j in range(K)] for i in range(K)]
    if edges == "none":
        return np.array(P), np.eye(n_global + K)
    kind = lambda i: "bg" if i >= n_classes else "class"

    def allowed(i, j):
        if edges == "all":
            return True
        if edges == "no_bg_bg":
            return not (kind(i) == "bg" and kind(j) == "bg")
        return kind(i) != kind(j)                                 # class_background

    A = [[1.0 if (i != j and P[i][j] >= t and allowed(i, j)) else 0.0 for j in range(K)] for i in range(K)]
    Ap = [[0.0] * K for _ in range(K)]
    for i in range(K):
        deg = sum(A[i])
        for j in range(K):
            if i == j: Ap[i][j] = 1 - p if deg > 0 else 1.0
            elif A[i][j]: Ap[i][j] = p / deg
    n = n_global + K
    M = [[0.0] * n for _ in range(n)]
    for a in range(n_global):
        M[a][a] = 1.0
        for i in range(K): M[a][n_global + i] = M[n_global + i][a] = w
    for i in range(K):
        for j in range(K): M[n_global + i][n_global + j] = (Ap[i][j] + Ap[j][i]) / 2
    d = [sum(row) for row in M]
    return np.array(P), np.array([[M[i][j] / (d[i] * d[j]) ** 0.5 for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("t,p,w", [(0.4, 0.25, 1.0), (0.2, 0.2, 0.5), (0.6, 0.5, 2.0)])
@pytest.mark.parametrize("edges", EDGES)
def test_float64_recomputation(seed, t, p, w, edges):
    L = _random_counts(seed, zero=(3,) if seed % 2 else ())      # 9 categories: 5 classes, 4 backgrounds
    P_ref, G_ref = _reference(L, t, p, 2, w, edges, n_classes=5)
    counts, pairs = count_cooccurrences(L)
    np.testing.assert_allclose(conditional_probabilities(counts, pairs), P_ref, atol=1e-15)
    cfg = dict(t=t, p=p, global_weight=w, edges=edges)
    G64 = clip_gcn_adjacency(counts, pairs, n_classes=5, config=cfg, dtype=torch.float64).numpy()
    np.testing.assert_allclose(G64, G_ref, atol=1e-14)
    G32 = clip_gcn_adjacency(counts, pairs, n_classes=5, config=GraphConfig(**cfg)).numpy()
    np.testing.assert_allclose(G32, G_ref, atol=1e-6)


def test_edge_sets_by_hand():
    "Two classes (0, 1) and two backgrounds (2, 3), every pair at P = 0.5: which pairs each edge set links."
    full = np.full((4, 4), 0.5)
    linked = {e: clip_gcn_adjacency(full, n_classes=2, n_global=0, config={"edges": e}).numpy() > 0 for e in EDGES}
    off = ~np.eye(4, dtype=bool)
    assert linked["all"][off].all()
    assert {(i, j) for i, j in zip(*np.nonzero(~linked["no_bg_bg"]))} == {(2, 3), (3, 2)}
    assert {(i, j) for i, j in zip(*np.nonzero(~linked["class_background"]))} == {(0, 1), (1, 0), (2, 3), (3, 2)}
    np.testing.assert_array_equal(linked["none"], np.eye(4, dtype=bool))
    # with the paper's edge set each node has 2 or 3 neighbours, P = 0.5 >= t: class rows 0.75, 0.25/3 x 3
    G = clip_gcn_adjacency(full, n_classes=2, n_global=0, dtype=torch.float64).numpy()
    Ap = np.array([[.75, 1 / 12, 1 / 12, 1 / 12], [1 / 12, .75, 1 / 12, 1 / 12],
                   [.125, .125, .75, 0], [.125, .125, 0, .75]])
    As = (Ap + Ap.T) / 2
    d = As.sum(1)
    np.testing.assert_allclose(G, As / np.sqrt(np.outer(d, d)), atol=1e-15)


def test_count_cooccurrences_matches_loops():
    L = _random_counts(1, n_images=30, K=5)
    counts, pairs = count_cooccurrences(L)
    for i in range(5):
        assert counts[i] == L[:, i].sum()
        for j in range(5): assert pairs[i, j] == (L[:, i] * L[:, j]).sum()
    soft = np.random.default_rng(0).random((50, 6))
    c, pc = count_cooccurrences(soft)           # soft counts are accepted and stay consistent
    check_counts(c, pc)
    np.testing.assert_allclose(pc, pc.T)


@pytest.mark.parametrize("seed", range(5))
def test_normalised_matrix_is_symmetric_with_spectrum_in_unit_interval(seed):
    counts, pairs = count_cooccurrences(_random_counts(seed, K=12))
    for n_global in (0, 2):
        G = clip_gcn_adjacency(counts, pairs, n_classes=8, n_global=n_global, dtype=torch.float64).numpy()
        np.testing.assert_allclose(G, G.T, atol=0)
        ev = np.linalg.eigvalsh(G)
        assert ev.max() <= 1 + 1e-12 and ev.min() >= -1 - 1e-12
        assert np.isclose(ev.max(), 1.0)         # D^{-1/2} A D^{-1/2} of a non-negative graph has top eigenvalue 1


@pytest.mark.parametrize("p", [0.0, 0.2, 0.25, 0.9])
def test_reweighted_rows(p):
    P = conditional_probabilities(*count_cooccurrences(_random_counts(4, K=10, zero=(2,))))
    A = binarize(P, 0.3)
    Ap = reweight(A, p)
    np.testing.assert_allclose(Ap.sum(1), np.ones(10), atol=1e-15)        # every row sums to 1
    has = A.sum(1) > 0
    np.testing.assert_allclose(np.diag(Ap)[has], 1 - p)
    np.testing.assert_allclose(np.diag(Ap)[~has], 1.0)                    # isolated: self loop 1
    off = Ap - np.diag(np.diag(Ap))
    np.testing.assert_allclose(off.sum(1)[has], p, atol=1e-15)
    np.testing.assert_allclose(reweight(A + np.eye(10), p), Ap, atol=0)   # the diagonal of A is ignored


def test_zero_count_categories_are_isolated():
    counts = np.array([8, 0, 5, 0])
    pairs = np.array([[8, 0, 4, 0], [0, 0, 0, 0], [4, 0, 5, 0], [0, 0, 0, 0]])
    P = conditional_probabilities(counts, pairs)
    assert np.all(P[1] == 0) and np.all(P[:, 1] == 0) and np.all(P[3] == 0)
    # P(2|0) = 0.5, P(0|2) = 0.8: only 0 <-> 2 linked; A' = rows [.75 0 .25 0], [0 1 0 0], [.25 0 .75 0], [0 0 0 1]
    Ad = clip_gcn_adjacency(P, n_global=0, config={"edges": "all"}, dtype=torch.float64).numpy()
    np.testing.assert_allclose(Ad, [[.75, 0, .25, 0], [0, 1, 0, 0], [.25, 0, .75, 0], [0, 0, 0, 1]], atol=1e-15)
    G = clip_gcn_adjacency(counts, pairs, n_classes=4, dtype=torch.float64).numpy()
    # zero-count node 1 (index 3 with globals): self loop 1 + two global links -> degree 3
    # globals: degree 1 + 4 = 5 -> link weight 1/sqrt(15); own entry 1/3
    np.testing.assert_allclose(G[3], [1 / np.sqrt(15), 1 / np.sqrt(15), 0, 1 / 3, 0, 0], atol=1e-15)
    all_zero = clip_gcn_adjacency(np.zeros(3), np.zeros((3, 3)), n_classes=3, n_global=0)
    np.testing.assert_allclose(all_zero.numpy(), np.eye(3))


def test_identity_and_ablation_options():
    none = {"edges": "none"}
    assert torch.equal(clip_gcn_adjacency(COUNTS, PAIRS, config=none), torch.eye(5))   # n_classes not needed
    assert torch.equal(clip_gcn_adjacency(COUNTS, PAIRS, n_global=0, config=none, dtype=torch.float64),
                       torch.eye(3, dtype=torch.float64))
    assert torch.equal(clip_gcn_adjacency(COUNTS, PAIRS, n_global=1, config=none), torch.eye(4))
    # p = 0: no category-category edge, globals still linked
    G = clip_gcn_adjacency(COUNTS, PAIRS, n_classes=2, config={"p": 0.0}, dtype=torch.float64).numpy()
    np.testing.assert_allclose(G[2:, 2:], np.eye(3) / 3, atol=1e-15)
    # no global links: globals isolated with a self loop, category block = ML-GCN graph
    G = clip_gcn_adjacency(COUNTS, PAIRS, n_classes=2, config={"global_weight": 0.0}, dtype=torch.float64).numpy()
    np.testing.assert_allclose(G[:2, :2], np.eye(2)); np.testing.assert_allclose(G[:2, 2:], 0)
    np.testing.assert_allclose(G[2:, 2:], NORM_HAND, atol=1e-15)
    np.testing.assert_allclose(normalize_symmetric(np.zeros((2, 2))), 0)  # zero degree -> zero row, no nan


def test_top_conditionals_and_heatmap():
    v = Vocab("toy", ["person", "dog"], ["grass"])
    edges = top_conditionals(P_HAND, v, k=4)
    # 0.8 grass->person, 0.75 dog->person, then the 0.5 tie broken by source index: person->grass, dog->grass
    assert edges == [Edge("grass", "person", .8), Edge("dog", "person", .75),
                     Edge("person", "grass", .5), Edge("dog", "grass", .5)]
    ax = plot_class_background_heatmap(P_HAND, v)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["grass"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["person", "dog"]
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()).ravel(), [.5, .5])   # P(grass | class)
    import matplotlib.pyplot as plt
    fig, own = plt.subplots()
    assert plot_class_background_heatmap(P_HAND, v, ax=own) is own
    plt.close("all")
    with pytest.raises(ValueError, match="no background"):
        plot_class_background_heatmap(P_HAND, Vocab("nobg", ["a", "b", "c"]))
    with pytest.raises(ValueError, match="2 categories"): top_conditionals(P_HAND, ["a", "b"])


@pytest.mark.parametrize("counts,pairs,match", [
    ([8, -1, 5], PAIRS, r"counts\[1\] = -1.0 is negative"),
    (COUNTS, [[8, -3, 4], [-3, 4, 2], [4, 2, 5]], r"pair_counts\[0, 1\] = -3.0 is negative"),
    (COUNTS, [[8, 3, 4], [3, 4, 6], [4, 6, 5]], r"pair_counts\[1, 2\] = 6.0 exceeds counts\[1\] = 4.0"),
    (COUNTS, [[9, 3, 4], [3, 4, 2], [4, 2, 5]], r"pair_counts\[0, 0\] = 9.0 exceeds"),
    (COUNTS, [[8, 3, 4], [2, 4, 2], [4, 2, 5]], "not symmetric"),
    (COUNTS, np.zeros((2, 2)), "shape mismatch"),
    (COUNTS, np.zeros((3, 4)), "shape mismatch"),
    (np.zeros((3, 1)), np.zeros((3, 3)), r"\(K,\) vector"),
    ([8, np.nan, 5], PAIRS, "non-finite"),
    (["a", "b", "c"], PAIRS, "numeric"),
])
def test_bad_counts_raise(counts, pairs, match):
    with pytest.raises(ValueError, match=match): conditional_probabilities(counts, pairs)
    with pytest.raises(ValueError, match=match): clip_gcn_adjacency(counts, pairs, n_classes=2)


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"GraphConfig.t must be in \(0, 1\], got 0"): GraphConfig(t=0)
    with pytest.raises(ValueError, match="GraphConfig.p"): clip_gcn_adjacency(COUNTS, PAIRS, config={"p": -0.1})
    with pytest.raises(ValueError, match="global_weight"): GraphConfig(global_weight=-1)
    with pytest.raises(ValueError, match="GraphConfig.edges must be one of"): GraphConfig(edges="identity")
    with pytest.raises(ValueError, match=r"unknown GraphConfig fields \['tau'\]"): clip_gcn_adjacency(COUNTS, PAIRS, config={"tau": 1})
    with pytest.raises(TypeError, match="expected a GraphConfig, a dict or None"): clip_gcn_adjacency(COUNTS, PAIRS, config=[0.4])
    with pytest.raises(ValueError, match="n_global"): clip_gcn_adjacency(COUNTS, PAIRS, n_classes=2, n_global=-1)
    with pytest.raises(ValueError, match="pass \\(counts, pair_counts\\)"): clip_gcn_adjacency(COUNTS)
    with pytest.raises(ValueError, match="not a probability"): clip_gcn_adjacency(P_HAND * 2, n_classes=2)
    with pytest.raises(ValueError, match="to pass P alone"): clip_gcn_adjacency(P_HAND, 2)
    with pytest.raises(ValueError, match="square"): clip_gcn_adjacency(np.zeros((2, 3)), n_classes=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"): count_cooccurrences([[0, 2]])
    for edges in ("no_bg_bg", "class_background"):   # the edge sets that tell classes from backgrounds need C
        with pytest.raises(ValueError, match=f"edges='{edges}' tells classes from backgrounds: pass n_classes in 0..3"):
            clip_gcn_adjacency(COUNTS, PAIRS, config={"edges": edges})
        with pytest.raises(ValueError, match="pass n_classes"):
            clip_gcn_adjacency(COUNTS, PAIRS, n_classes=4, config={"edges": edges})
