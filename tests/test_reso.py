"""ReSO: small-object regions on hand-made maps, crop boxes, crops and crop targets."""
import numpy as np
import pytest
import torch
from PIL import Image

from bacgcn.ops import min_max
from bacgcn.reso import (ResoConfig, SmallRegion, as_grid, connected_components, crop_and_resize, crop_box_pixels,
                         crop_targets, expand_box, mask_box, region_targets, select_region,
                         small_object_regions, threshold_mask)

A = np.array([[0.2, 0.2, 0.2, 0.2],
              [0.2, 1.0, 0.8, 0.2],
              [0.2, 0.2, 0.2, 0.2],
              [0.2, 0.2, 0.2, 0.2]])   # F = 2 cells: area 0.125
BIG = np.array([[0.9] * 4, [0.9] * 4, [0.1] * 4, [0.1] * 4])   # F = 8 cells: area 0.5
C = np.array([[1.0, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.9, 0.8]])   # F = 3 cells in two components


def test_normalise_threshold_area():
    np.testing.assert_allclose(min_max(A, axis=(-2, -1))[1], [0, 1, 0.75, 0])
    assert threshold_mask(A, 0.5).sum() == 2
    assert threshold_mask(A, 0.8).sum() == 1
    assert threshold_mask(np.array([[0.0, 0.5], [1.0, 0.25]]), 0.5).sum() == 1   # strict >: 0.5 itself is out
    assert threshold_mask(BIG, 0.5).mean() == 0.5
    np.testing.assert_array_equal(min_max(np.full((2, 2), 3.0), axis=(-2, -1)), np.zeros((2, 2)))
    # min-max normalisation is per map
    two = min_max(np.stack([A, 10 * C]), axis=(-2, -1))
    np.testing.assert_allclose(two[1], C)


def test_regions_worked_example():
    maps = np.stack([np.stack([A, BIG, C]), np.stack([C, A, BIG])])      # B=2, K=3, 4, 4
    pseudo = np.array([[1, 1, 0], [1, 0, 1]])
    regions = small_object_regions(torch.tensor(maps).flatten(2), torch.tensor(pseudo), dict(epsilon=0.2))
    assert [(r.image_index, r.category) for r in regions] == [(0, 0), (1, 0)]
    np.testing.assert_allclose(regions[0].box, (0.125, 0.1875, 0.875, 0.5625))
    np.testing.assert_allclose(regions[1].box, (0.375, 0.6875, 1.0, 1.0))
    assert [r.area for r in regions] == [0.125, 0.1875]
    assert isinstance(regions[0], SmallRegion) and isinstance(regions[0].box, tuple)
    # the same maps as (B, K, h, w)
    assert small_object_regions(maps, pseudo, dict(epsilon=0.2)) == regions
    # default epsilon 0.1: neither 2/16 nor 3/16 is small
    assert small_object_regions(maps, pseudo) == []
    # epsilon is a strict bound: area 0.125 with epsilon 0.125 is not small
    assert [r.image_index for r in small_object_regions(maps, pseudo, dict(epsilon=0.125))] == []


def test_regions_component_choice():
    maps, pseudo = C[None, None], np.ones((1, 1))
    boxes = {c: small_object_regions(maps, pseudo, dict(epsilon=0.2, margin=0.0, component=c))[0].box
             for c in ("largest", "peak", "all")}
    assert boxes == {"largest": (0.5, 0.75, 1.0, 1.0), "peak": (0.0, 0.0, 0.25, 0.25), "all": (0.0, 0.0, 1.0, 1.0)}


def test_regions_only_pseudo_positive_classes_and_nonconstant_maps():
    maps = np.stack([A, A, np.full((4, 4), 0.3)])[None]                   # B=1, K=3
    cfg = dict(epsilon=0.2)
    assert [r.category for r in small_object_regions(maps, np.array([[1, 0, 1]]), cfg)] == [0]   # 1 absent, 2 constant
    assert [r.category for r in small_object_regions(maps, np.array([[0.25, 1 / 12, 0]]), cfg)] == [0, 1]  # soft > 0
    assert small_object_regions(maps, np.array([[1, 1, 1]]), cfg, n_classes=1)[0].category == 0
    assert len(small_object_regions(maps, np.array([[1, 1, 1]]), cfg, n_classes=1)) == 1


def test_regions_non_square_grid():
    s = np.zeros((2, 3))
    s[0, 2] = 1.0
    regions = small_object_regions(s.reshape(1, 1, 6), np.ones((1, 1)), dict(epsilon=0.2, margin=0.0), grid=(2, 3))
    assert regions[0].box == (2 / 3, 0.0, 1.0, 0.5) and regions[0].area == 1 / 6
    with pytest.raises(ValueError, match=r"pass grid=\(h, w\)"):
        small_object_regions(s.reshape(1, 1, 6), np.ones((1, 1)))
    with pytest.raises(ValueError, match="do not fill grid"):
        small_object_regions(s.reshape(1, 1, 6), np.ones((1, 1)), grid=(2, 2))


def test_regions_bad_input():
    with pytest.raises(ValueError, match=r"must share \(B, K\)"):
        small_object_regions(np.zeros((2, 3, 16)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        small_object_regions(np.full((1, 1, 16), np.nan), np.ones((1, 1)))
    with pytest.raises(ValueError, match="leading dims"):
        small_object_regions(np.zeros(16), np.ones((1, 1)))
    with pytest.raises(ValueError, match="unknown ResoConfig fields"):
        small_object_regions(np.zeros((1, 1, 16)), np.ones((1, 1)), {"threshold": 0.3})
    for bad, msg in [(dict(tau=1.0), r"ResoConfig.tau must be in \[0, 1\), got 1.0"), (dict(epsilon=0), "epsilon"),
                     (dict(margin=-1), "margin"), (dict(normalize="zscore"), "'minmax' or 'softmax'"),
                     (dict(min_crop_px=0), "min_crop_px")]:
        with pytest.raises(ValueError, match=msg):
            ResoConfig(**bad)
    for gone in ("start_epoch", "total_epochs", "temperature", "connectivity"):   # the schedule is TrainConfig's
        with pytest.raises(ValueError, match=f"unknown ResoConfig fields \\['{gone}'\\]"):
            small_object_regions(np.zeros((1, 1, 16)), np.ones((1, 1)), {gone: 1})


def softmax_reference(maps, pseudo, tau, epsilon, n_classes):
    "Loop-by-loop float64 reference of the 'softmax' reading: cell (x, y) in F when o's share there exceeds tau."
    B, K, h, w = maps.shape
    out = []
    for i in range(B):
        for o in range(n_classes):
            if pseudo[i, o] <= 0:
                continue
            cells = []
            for y in range(h):
                for x in range(w):
                    e = [np.exp((maps[i, k, y, x] - maps[i, :, y, x].max()) / 0.01) for k in range(K)]
                    if e[o] / sum(e) > tau:
                        cells.append((y, x))
            if 0 < len(cells) < epsilon * h * w:
                out.append((i, o, len(cells) / (h * w)))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_softmax_normalisation_matches_a_loop_reference(seed):
    rng = np.random.default_rng(seed)
    maps = 0.2 + 0.02 * rng.standard_normal((3, 4, 6, 6))
    maps[:, 0] -= 0.05
    maps[:, 0, 1:3, 1:3] += 0.2     # category 0 dominates a 2x2 block (by 0.15) and nothing else
    pseudo = (rng.random((3, 4)) < 0.7).astype(float)
    cfg = dict(normalize="softmax", tau=0.5, epsilon=0.3)
    ours = [(r.image_index, r.category, r.area) for r in small_object_regions(maps, pseudo, cfg, n_classes=3)]
    ref = softmax_reference(maps, pseudo, 0.5, 0.3, 3)
    assert [(i, o) for i, o, _ in ours] == [(i, o) for i, o, _ in ref]
    np.testing.assert_allclose([a for *_, a in ours], [a for *_, a in ref], atol=0)
    assert [(i, a) for i, o, a in ours if o == 0] == [(i, 4 / 36) for i in np.flatnonzero(pseudo[:, 0])]


def test_model_output_feeds_reso():
    """sim_maps straight from the model (B, K, N), with grad, on a 14x14 grid: a 2x2-cell object of class 0 in image
    0 and a 3x2-cell object of class 1 in image 1 on a background orthogonal to both classes are the two regions,
    with the boxes worked out by hand (cell edges / 14, grown by a quarter of the box per side)."""
    from bacgcn.model import BACGCN
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    m = BACGCN(text, torch.eye(5), categories=["a", "b", "c"], n_classes=2)
    q, _ = torch.linalg.qr(text[:2].T, mode="complete")   # columns 2.. are orthogonal to both class embeddings
    patches = q[:, 2] + 0.05 * torch.randn(2, 196, 8)
    grid = patches.view(2, 14, 14, 8)
    grid[0, 3:5, 4:6] = text[0]   # rows 3-4, columns 4-5
    grid[1, 9:12, 10:12] = text[1]   # rows 9-11, columns 10-11
    sim = m(patches, torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8))["sim_maps"]
    assert sim.requires_grad and sim.shape == (2, 3, 196)
    regions = small_object_regions(sim, torch.ones(2, 3), n_classes=2)   # category 2 is a background: never a crop
    assert [(r.image_index, r.category) for r in regions] == [(0, 0), (1, 1)]
    assert regions[0].box == pytest.approx((3.5 / 14, 2.5 / 14, 6.5 / 14, 5.5 / 14))
    assert regions[1].box == pytest.approx((9.5 / 14, 8.25 / 14, 12.5 / 14, 12.75 / 14))
    assert [r.area for r in regions] == pytest.approx([4 / 196, 6 / 196])


def test_components_and_boxes():
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    assert connected_components(ring)[1] == 1
    checker = np.array([[1, 0], [0, 1]], bool)
    assert connected_components(checker)[1] == 1                      # 8-neighbours: touching corners connect
    labels, n = connected_components(np.array([[1, 1, 0, 1]], bool))
    assert n == 2 and labels.tolist() == [[1, 1, 0, 2]]
    labels, n = connected_components(np.zeros((3, 3), bool))
    assert n == 0 and not labels.any()
    # ties between equal-size components: the one with the peak wins
    norm = np.array([[0.9, 0, 1.0], [0, 0, 0]])
    assert mask_box(select_region(norm, norm > 0.5, "largest")) == (2 / 3, 0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((2, 2), bool))
    assert expand_box((0.4, 0.4, 0.6, 0.6), 0.5) == pytest.approx((0.3, 0.3, 0.7, 0.7))
    assert expand_box((0.0, 0.9, 0.2, 1.0), 1.0) == pytest.approx((0.0, 0.8, 0.4, 1.0))


def test_crop_box_pixels():
    assert crop_box_pixels((25, 18.75, 175, 56.25), 200, 100) == (25, 0, 175, 100)
    assert crop_box_pixels((25, 18.75, 175, 56.25), 200, 100, square=False) == (25, 19, 175, 56)
    assert crop_box_pixels((100, 50, 110, 55), 200, 100) == (89, 37, 121, 69)
    assert crop_box_pixels((90, 90, 100, 100), 100, 100, min_crop_px=40) == (60, 60, 100, 100)   # shifted inside
    assert crop_box_pixels((0, 0, 640, 480), 640, 480) == (0, 0, 640, 480)
    assert crop_box_pixels((-10, -5, 20, 30), 100, 100, min_crop_px=1) == (0, 0, 30, 30)   # clipped to the photo
    for bad in [(50, 50, 50, 60), (-20, 0, -5, 50), (120, 0, 150, 50)]:   # empty, or outside the photo
        with pytest.raises(ValueError, match="empty or outside"):
            crop_box_pixels(bad, 100, 100)


def test_crop_and_resize_shows_the_object():
    img = Image.new("RGB", (300, 200), (0, 0, 255))
    img.paste((255, 0, 0), (200, 40, 230, 70))
    crop = crop_and_resize(img, (200, 40, 230, 70), 224)
    assert crop.size == (224, 224) and crop.mode == "RGB"
    assert crop.getpixel((112, 112)) == (255, 0, 0)
    assert crop.getpixel((0, 0)) == (0, 0, 255)              # the 32 px minimum leaves a blue border
    gray = crop_and_resize(img.convert("L"), (30, 20, 150, 100), (32, 48))
    assert gray.size == (32, 48) and gray.mode == "L"


def test_crop_targets():
    t, m = crop_targets(np.array([1, 1, 0, 0]), 0)
    np.testing.assert_array_equal(t, [1, 0, 0, 0])
    np.testing.assert_array_equal(m, [1, 0, 1, 1])
    assert t.dtype == np.float32 and m.dtype == np.float32
    t, m = crop_targets(torch.tensor([0.5, 0.0, 1 / 12, 0.0]), 2)
    assert isinstance(t, torch.Tensor) and t.tolist() == [0, 0, 1, 0] and m.tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="not a pseudo label"):
        crop_targets(np.array([1, 0, 0]), 2)
    with pytest.raises(ValueError, match=r"category in \[0, K\), got shape \(3,\) and category 3"):
        crop_targets(np.array([1, 0, 0]), 3)
    with pytest.raises(ValueError, match=r"one image's \(K,\) pseudo labels"):
        crop_targets(np.ones((2, 3)), 0)


def test_region_targets_feed_the_masked_loss():
    from bacgcn.model import masked_bce
    pseudo = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    regions = [SmallRegion(0, 1, (0, 0, 1, 1), 0.05), SmallRegion(1, 2, (0, 0, 1, 1), 0.05)]
    T, M = region_targets(regions, pseudo)
    assert T.tolist() == [[0, 1, 0], [0, 0, 1]] and M.tolist() == [[0, 1, 1], [0, 1, 1]]
    logits = torch.tensor([[5.0, 0.0, 0.0], [-5.0, 0.0, 0.0]])
    # only the kept entries count: the four kept entries all have logit 0, so each costs log 2
    assert masked_bce(logits, T, M).item() == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="no regions"):
        region_targets([], pseudo)


def test_as_grid():
    np.testing.assert_array_equal(as_grid(np.arange(12.0).reshape(1, 1, 12), grid=(3, 4))[0, 0],
                                  [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])      # row-major, as ViT patches
    np.testing.assert_array_equal(as_grid(np.arange(196.0).reshape(1, 1, 196))[0, 0, 2], np.arange(28.0, 42.0))
    with pytest.raises(ValueError, match="grid says"):
        as_grid(np.zeros((1, 1, 4, 4)), grid=(2, 8))
