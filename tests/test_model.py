"""Similarity Kernel, CLIP-GCN, BAC-GCN model, losses and zero-shot baselines against independent references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bacgcn.config import as_config
from bacgcn.gcn import CLIPGCN, GraphConvolution
from bacgcn.kernel import SimilarityKernel
from bacgcn.model import (BACGCN, LOSSES, ModelConfig, asymmetric_loss, cdul_scores, masked_bce, zero_shot_logits)

K, D, N, B = 5, 8, 16, 3


def feats(seed=0, b=B, n=N, d=D):
    g = torch.Generator().manual_seed(seed)
    return dict(patches=torch.randn(b, n, d, generator=g), global_=torch.randn(b, d, generator=g),
                g_h=torch.randn(b, d, generator=g), g_hc=torch.randn(b, d, generator=g))


def make_model(seed=0, config=None, k=K, n_global=2, names=None):
    "A model with the default (paper) config unless `config` says otherwise."
    torch.manual_seed(seed)
    text = torch.randn(k, D)
    adj = torch.full((n_global + k, n_global + k), 1.0 / (n_global + k))
    return BACGCN(text, adj, categories=names or [f"c{i}" for i in range(k)], n_classes=k - 1, config=config)


# ---------------------------------------------------------------- kernel

def kernel_reference(patches, w, k, pooling, T):
    "float64 loop-by-loop recomputation of S, Top-k and the (soft) average."
    P = patches.double().numpy()
    W = w.double().numpy()
    Pn = P / np.linalg.norm(P, axis=-1, keepdims=True)
    Wn = W / np.linalg.norm(W, axis=-1, keepdims=True)
    b_, n_, _ = P.shape
    S = np.zeros((b_, len(W), n_))
    L = np.zeros((b_, len(W), P.shape[-1]))
    for b in range(b_):
        for o in range(len(W)):
            S[b, o] = Pn[b] @ Wn[o]
            idx = np.argsort(-S[b, o], kind="stable")[:k]
            if pooling == "soft":
                e = np.exp((S[b, o, idx] - S[b, o, idx].max()) / T)
                a = e / e.sum()
            else:
                a = np.full(k, 1.0 / k)
            L[b, o] = (a[:, None] * Pn[b, idx]).sum(0)
    return S, L


@pytest.mark.parametrize("pooling", ["soft", "hard"])
def test_kernel_matches_float64_reference(pooling):
    f = feats(1)
    w = torch.randn(K, D, generator=torch.Generator().manual_seed(2))
    ker = SimilarityKernel(w, top_k=4, pooling=pooling, temperature=0.1).double()
    local, sim = ker(f["patches"].double())
    S, L = kernel_reference(f["patches"], w, 4, pooling, 0.1)
    np.testing.assert_allclose(sim.detach().numpy(), S, atol=1e-12)
    np.testing.assert_allclose(local.detach().numpy(), L, atol=1e-12)


def test_kernel_worked_example_and_hard_mean():
    P = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [-2.0, 0.0]]])
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    local, sim = SimilarityKernel(W, top_k=2, pooling="hard")(P)
    torch.testing.assert_close(sim[0], torch.tensor([[1.0, 0.0, 0.6, -1.0], [0.0, 1.0, 0.8, 0.0]]))
    torch.testing.assert_close(local[0], torch.tensor([[0.8, 0.4], [0.3, 0.9]]))
    local, _ = SimilarityKernel(W, top_k=2, temperature=0.2)(P)
    s = 1 / (1 + math.exp(-2))
    torch.testing.assert_close(local[0, 0], torch.tensor([s + 0.6 * (1 - s), 0.8 * (1 - s)]))


def test_kernel_soft_tends_to_hard_and_max():
    f = feats(3)
    w = torch.randn(K, D)
    hard, _ = SimilarityKernel(w, top_k=4, pooling="hard")(f["patches"])
    warm, _ = SimilarityKernel(w, top_k=4, temperature=1e6)(f["patches"])
    cold, _ = SimilarityKernel(w, top_k=1, pooling="hard")(f["patches"])
    frozen, _ = SimilarityKernel(w, top_k=4, temperature=1e-6)(f["patches"])
    torch.testing.assert_close(warm, hard)
    torch.testing.assert_close(frozen, cold)


def test_kernel_gradient_reaches_category_embeddings():
    ker = SimilarityKernel(torch.randn(K, D), top_k=4)
    local, _ = ker(feats()["patches"])
    local.pow(2).sum().backward()
    assert ker.category_embed.grad is not None
    assert (ker.category_embed.grad.abs().sum(-1) > 0).all()


def test_kernel_bad_input():
    ker = SimilarityKernel(torch.randn(K, D), top_k=N + 1)
    with pytest.raises(ValueError, match=f"top_k={N + 1} but the similarity map has only N={N}"):
        ker(feats()["patches"])
    with pytest.raises(ValueError, match=r"\(B, N, D=8\)"):
        SimilarityKernel(torch.randn(K, D))(torch.randn(2, N, D + 1))
    with pytest.raises(ValueError, match=r"must be \(K, D\)"):
        SimilarityKernel(torch.randn(D))
    with pytest.raises(ValueError, match="non-finite"):
        SimilarityKernel(torch.full((K, D), float("nan")))
    with pytest.raises(ValueError, match="need pooling 'soft' or 'hard', top_k >= 1 and temperature > 0"):
        SimilarityKernel(torch.randn(K, D), top_k=0)
    with pytest.raises(ValueError, match="unknown ModelConfig fields \\['kernel'\\]"):
        as_config(ModelConfig, {"kernel": {"top_k": 3}})
    with pytest.raises(TypeError, match="expected a ModelConfig"):
        as_config(ModelConfig, 3)


# ---------------------------------------------------------------- gcn

def identity_weights(g):
    with torch.no_grad():
        for conv in g.convs:
            conv.weight.copy_(torch.eye(g.dim))
    return g


@pytest.mark.parametrize("residual", [True, False])
def test_gcn_matches_float64_reference(residual):
    torch.manual_seed(0)
    A = torch.rand(4, 4).double()    # float32 values: the buffer is stored in float32 before .double()
    x = torch.randn(2, 4, D, dtype=torch.float64)
    g = CLIPGCN(A, D, n_layers=3, residual=residual).double()
    with torch.no_grad():                      # LayerNorm weights away from their (1, 0) init, so they count
        for p in g.norms.parameters():
            p.uniform_(0.5, 1.5)
    h = x.numpy()
    for i, conv in enumerate(g.convs):
        z = np.einsum("ij,bjd->bid", A.numpy(), h @ conv.weight.detach().numpy())
        z = np.where(z > 0, z, 0.2 * z)
        if residual:
            z = z + h
            mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
            z = (z - mu) / np.sqrt(var + 1e-5) * g.norms[i].weight.detach().numpy() + g.norms[i].bias.detach().numpy()
        h = z
    np.testing.assert_allclose(g(x).detach().numpy(), h, atol=1e-10)


def test_gcn_two_node_mixing_by_hand():
    A = torch.tensor([[0.75, 0.25], [0.25, 0.75]], dtype=torch.float64)
    H = torch.tensor([[[1.0, 0.0], [0.0, -4.0]]], dtype=torch.float64)
    g = identity_weights(CLIPGCN(A, 2, n_layers=1, residual=False)).double()
    torch.testing.assert_close(g(H), torch.tensor([[[0.75, -0.2], [0.25, -0.6]]], dtype=torch.float64), atol=1e-12, rtol=0)
    g = identity_weights(CLIPGCN(A, 2, n_layers=2, residual=False)).double()
    torch.testing.assert_close(g(H), torch.tensor([[[0.625, -0.06], [0.375, -0.1]]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_gcn_identity_graph_identity_weights():
    g = identity_weights(CLIPGCN(torch.eye(1), 4, n_layers=1)).double()
    h = torch.tensor([[[1.0, -2.0, 3.0, 0.0]]], dtype=torch.float64)
    expect = torch.tensor([[[0.6, -3.8, 4.6, -1.4]]], dtype=torch.float64) / math.sqrt(9.48 + 1e-5)
    torch.testing.assert_close(g(h), expect, atol=1e-12, rtol=0)


def test_graph_convolution_uniform_init():
    torch.manual_seed(0)
    gc = GraphConvolution(D, 2 * D)
    bound = 1 / math.sqrt(2 * D)
    assert gc.weight.abs().max() <= bound and gc.weight.abs().max() > 0.8 * bound   # fills U(-bound, bound)
    x, A = torch.randn(2, 3, D), torch.rand(3, 3)
    torch.testing.assert_close(gc(x, A), A @ (x @ gc.weight))


def test_gcn_adjacency_is_buffer_and_moves_with_state_dict():
    g = CLIPGCN(torch.eye(3) * 0.5, D)
    assert "adj" in dict(g.named_buffers()) and "adj" not in dict(g.named_parameters())
    assert "adj" in g.state_dict()
    g2 = CLIPGCN(torch.eye(3), D)
    g2.load_state_dict(g.state_dict())
    torch.testing.assert_close(g2.adj, torch.eye(3) * 0.5)


def test_gcn_bad_input():
    with pytest.raises(ValueError, match="square"):
        CLIPGCN(torch.zeros(3, 2), D)
    with pytest.raises(ValueError, match="non-finite"):
        CLIPGCN(torch.full((3, 3), float("inf")), D)
    with pytest.raises(ValueError, match=r"\(B, M=3, D=8\)"):
        CLIPGCN(torch.eye(3), D)(torch.randn(2, 4, D))
    with pytest.raises(ValueError, match="ModelConfig.gcn_layers must be >= 1, got 0"):
        ModelConfig(gcn_layers=0)


# ---------------------------------------------------------------- model

def cos(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)) @ (b / np.linalg.norm(b, axis=-1, keepdims=True)).T


@pytest.mark.parametrize("mode", ["max", "sum"])
def test_global_logits_reference(mode):
    m = make_model(config=dict(global_agg=mode))
    f = feats()
    out = m(**f)
    w = m.kernel.category_embed.detach()
    ch, chc = cos(f["g_h"], w), cos(f["g_hc"], w)
    ref = (np.maximum(ch, chc) if mode == "max" else ch + chc) / 0.07
    np.testing.assert_allclose(out["global_logits"].detach().numpy(), ref, rtol=1e-5)


def test_local_logits_are_diagonal_of_node_category_cosines():
    m = make_model()
    f = feats()
    out = m(**f)
    local, _ = m.kernel(f["patches"])
    nodes = F.normalize(torch.cat([torch.stack([f["g_h"], f["g_hc"]], 1), local], 1), dim=-1)
    h = m.gcn(nodes)[:, 2:]                                  # B, K, D
    w = m.kernel.category_embed.detach()
    full = np.stack([cos(h[b].detach(), w) for b in range(B)])  # B, K(nodes), K(categories)
    ref = np.stack([np.diag(full[b]) for b in range(B)]) / 0.07
    np.testing.assert_allclose(out["local_logits"].detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["logits"], out["global_logits"] + out["local_logits"] + m.logit_bias)


def test_relu_gcn_on_identity_graph_gives_cosine_of_local_features():
    "Â = I, W = I, no residual: each layer is a LeakyReLU, and positive features pass unchanged."
    m = make_model(config=dict(gcn_residual=False))
    m.gcn.adj.copy_(torch.eye(2 + K))
    identity_weights(m.gcn)
    f = feats()
    f["patches"] = f["patches"].abs()            # positive patches -> positive local features
    local, _ = m.kernel(f["patches"])
    w = m.kernel.category_embed.detach()
    ref = np.stack([np.diag(cos(local[b].detach(), w)) for b in range(B)]) / 0.07
    np.testing.assert_allclose(m(**f)["local_logits"].detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_ablations():
    f = feats()
    m = make_model(config=dict(nodes="plain", global_views="plain"), n_global=1)
    ref = cos(f["global_"], m.kernel.category_embed.detach()) / 0.07
    np.testing.assert_allclose(m(f["patches"], global_=f["global_"])["global_logits"].detach().numpy(), ref, rtol=1e-5)
    m = make_model(config=dict(use_local=False))
    out = m(**f)
    assert not out["local_logits"].any() and not any("gcn" in n for n in m.state_dict()) and m.gcn is None
    torch.testing.assert_close(out["logits"], out["global_logits"] + m.logit_bias)
    m = make_model(config=dict(use_global=False))
    out = m(**f)
    assert not out["global_logits"].any() and out["local_logits"].abs().sum() > 0
    m(f["patches"], g_h=f["g_h"], g_hc=f["g_hc"])           # the local branch needs the node inputs only
    with pytest.raises(ValueError, match="nothing would be predicted"):
        ModelConfig(use_global=False, use_local=False)


def test_logit_scale_init_and_clamp():
    m = make_model()
    assert math.isclose(m.scale().item(), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        m.logit_scale.fill_(math.log(1000.0))
    assert math.isclose(m.scale().item(), 100.0, rel_tol=1e-6)
    m = make_model(config=dict(logit_scale=10.0))
    assert math.isclose(m.scale().item(), 10.0, rel_tol=1e-6) and "logit_scale" in dict(m.named_parameters())
    with pytest.raises(ValueError, match=r"ModelConfig.logit_scale must be in \(0, 100\], got 200"):
        ModelConfig(logit_scale=200)


def test_gradients_reach_embeddings_gcn_scale_and_bias():
    m = make_model()
    out = m(**feats())
    y = (torch.rand(B, K, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    masked_bce(out["logits"], y).backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert grads["kernel.category_embed"].abs().sum() > 0
    for i in range(2):
        assert grads[f"gcn.convs.{i}.weight"].abs().sum() > 0
    assert grads["logit_scale"].abs() > 0 and grads["logit_bias"].abs().sum() > 0


def test_deterministic_under_seed_and_fp16_inputs():
    f = feats()
    a, b = make_model(seed=7), make_model(seed=7)
    torch.testing.assert_close(a(**f)["logits"], b(**f)["logits"], rtol=0, atol=0)
    half = {k: v.half() for k, v in f.items()}
    out = a(**half)
    assert out["logits"].dtype == torch.float32
    torch.testing.assert_close(out["logits"], a(**{k: v.float() for k, v in half.items()})["logits"])


def test_model_bad_input():
    with pytest.raises(ValueError, match=r"G=2 global \+ K=5 local nodes, \(7, 7\), got \(6, 6\).*n_global=2"):
        BACGCN(torch.randn(K, D), torch.eye(6), categories=[f"c{i}" for i in range(K)])
    with pytest.raises(ValueError, match=r"the local branch needs the adjacency .* got None"):
        BACGCN(torch.randn(K, D), categories=[f"c{i}" for i in range(K)])
    with pytest.raises(ValueError, match="n_classes=9"):
        BACGCN(torch.randn(K, D), torch.eye(K + 2), categories=[f"c{i}" for i in range(K)], n_classes=9)
    m = make_model()
    f = feats()
    with pytest.raises(ValueError, match=r"needs `g_hc` \(B, D\) = \(3, 8\), got nothing"):
        m(f["patches"], g_h=f["g_h"])
    with pytest.raises(ValueError, match=r"needs `g_h` \(B, D\) = \(3, 8\), got \(2, 8\)"):
        m(f["patches"], g_h=f["g_h"][:2], g_hc=f["g_hc"][:2])


def test_vocab_object_gives_categories_and_n_classes():
    from bacgcn.vocab import Vocab
    v = Vocab("toy", ["boat", "car"], ["water"])
    m = BACGCN(torch.randn(3, D), torch.eye(5), categories=v)
    assert m.categories == ["boat", "car", "water"] and m.n_classes == 2


def test_init_logit_bias_matches_prior():
    m = make_model()
    out = m(**feats(b=16))
    x = (out["global_logits"] + out["local_logits"]).detach()
    prior = torch.linspace(0.05, 0.6, K)
    m.init_logit_bias(x, prior)
    torch.testing.assert_close(torch.sigmoid(x + m.logit_bias.detach()).mean(0), prior, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_roundtrip(tmp_path):
    a = make_model(config=dict(top_k=3, gcn_layers=3, pooling="hard", global_views="all"))
    a.eval()
    path = a.save_checkpoint(tmp_path / "sub" / "model.pt", epoch=4)
    b = BACGCN.from_checkpoint(path, categories=a.categories).eval()
    assert b.config == a.config and b.n_classes == a.n_classes
    torch.testing.assert_close(b(**feats())["logits"], a(**feats())["logits"])
    c = make_model(seed=1, config=dict(top_k=3, gcn_layers=3, pooling="hard", global_views="all")).eval()
    assert c.load_checkpoint(path) == {"epoch": 4}
    torch.testing.assert_close(c(**feats())["logits"], a(**feats())["logits"])


def test_checkpoint_from_another_vocabulary_is_refused(tmp_path):
    path = make_model().save_checkpoint(tmp_path / "m.pt")
    other = make_model(k=K + 1)
    with pytest.raises(ValueError, match=r"m\.pt: refused.*trained on 5 categories, this model has 6.*not in the checkpoint: \['c5'\]"):
        other.load_checkpoint(path)
    with pytest.raises(ValueError, match=r"only in the checkpoint: \['c4'\]"):
        BACGCN.from_checkpoint(path, categories=["c0", "c1", "c2", "c3", "road"])
    with pytest.raises(ValueError, match="another order"):
        make_model(names=["c1", "c0", "c2", "c3", "c4"]).load_checkpoint(path)


def test_checkpoint_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        BACGCN.from_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a readable torch file"):
        BACGCN.from_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt is empty"):
        BACGCN.from_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="is a folder"):
        BACGCN.from_checkpoint(tmp_path)

    class Payload:  # unpickling it would run code
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"format": "x", "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt was refused: loading it would run code"):
        BACGCN.from_checkpoint(tmp_path / "evil.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a BAC-GCN model checkpoint"):
        BACGCN.from_checkpoint(tmp_path / "other.pt")
    ck = make_model().checkpoint()
    ck["state_dict"] = make_model(config=dict(gcn_layers=3)).state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        make_model().load_checkpoint(ck)
    old = make_model().checkpoint() | {"format": "bacgcn.model/1"}      # the nested config of earlier versions
    with pytest.raises(ValueError, match="checkpoint format 'bacgcn.model/1', this version reads 'bacgcn.model/2'"):
        BACGCN.from_checkpoint(old, where="old.pt")


# ---------------------------------------------------------------- losses

def test_bce_matches_torch_on_soft_targets_with_mask():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, K, generator=g) * 3
    targets = torch.randint(0, 13, (6, K), generator=g).float() / 12
    mask = torch.rand(6, K, generator=g) > 0.3
    ours = masked_bce(logits, targets, mask)
    ref = F.binary_cross_entropy_with_logits(logits[mask], targets[mask])
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(masked_bce(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def asl_reference(x, y, gn=4.0, gp=0.0, clip=0.05, eps=1e-8):
    "float64 recomputation of the ASL formula (Ridnik et al. 2021), per part."
    x, y = x.double().numpy(), y.double().numpy()
    p = 1 / (1 + np.exp(-x))
    pm = np.maximum(p - clip, 0)
    pos = y * (1 - p) ** gp * np.log(np.maximum(p, eps))
    neg = (1 - y) * pm ** gn * np.log(np.maximum(1 - pm, eps))
    return -(pos + neg)


@pytest.mark.parametrize("gp,clip", [(0.0, 0.05), (1.0, 0.0), (2.0, 0.2)])
def test_asl_matches_float64_formula(gp, clip):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, K, generator=g, dtype=torch.float64) * 4
    y = (torch.rand(8, K, generator=g) > 0.6).double()
    mask = (torch.rand(8, K, generator=g) > 0.2).double()
    ours = asymmetric_loss(x, y, mask, gamma_neg=4.0, gamma_pos=gp, clip=clip).item()
    ref = asl_reference(x, y, 4.0, gp, clip)
    m = mask.numpy()
    assert math.isclose(ours, (ref * m).sum() / m.sum(), rel_tol=1e-10)
    soft = torch.rand(8, K, generator=g, dtype=torch.float64)
    assert math.isclose(asymmetric_loss(x, soft, gamma_pos=gp, clip=clip).item(), asl_reference(x, soft, 4.0, gp, clip).mean(),
                        rel_tol=1e-10)


def test_asl_without_focusing_is_bce():
    x = torch.randn(4, K, dtype=torch.float64)
    y = torch.rand(4, K, dtype=torch.float64)
    torch.testing.assert_close(asymmetric_loss(x, y, gamma_neg=0.0, gamma_pos=0.0, clip=0.0),
                               F.binary_cross_entropy_with_logits(x, y))
    x = torch.randn(6, K, dtype=torch.float64)
    y = (torch.rand(6, K) > 0.5).double()
    assert math.isclose(LOSSES["asl"](x, y).item(), asl_reference(x, y).mean(), rel_tol=1e-10)  # published defaults


def test_loss_bad_input_and_config():
    assert list(LOSSES) == ["bce", "asl"] and LOSSES["bce"] is masked_bce
    for loss in LOSSES.values():
        with pytest.raises(ValueError, match="belong in `mask`"):
            loss(torch.zeros(2, K), -torch.ones(2, K))
        with pytest.raises(ValueError, match=r"must all be \(B, K\), got \(2, 5\), \(2, 5\), \(2, 6\)"):
            loss(torch.zeros(2, K), torch.zeros(2, K), torch.ones(2, K + 1))
        with pytest.raises(ValueError, match=r"must all be \(B, K\)"):
            loss(torch.zeros(2, K), torch.zeros(2, K - 1))
        assert loss(torch.zeros(2, K, requires_grad=True), torch.ones(2, K), torch.zeros(2, K)).item() == 0.0


# ---------------------------------------------------------------- zero-shot baselines

def test_zero_shot_baselines_reference():
    f = feats()
    text = torch.randn(K, D)
    np.testing.assert_allclose(zero_shot_logits("clip_global", text, global_=f["global_"]).numpy(),
                               100 * cos(f["global_"], text), rtol=1e-5)
    loc = np.stack([cos(f["patches"][b], text).max(0) for b in range(B)])
    np.testing.assert_allclose(zero_shot_logits("clip_local", text, patches=f["patches"]).numpy(), 100 * loc, rtol=1e-5)
    mg = np.maximum.reduce([cos(f[k], text) for k in ("global_", "g_h", "g_hc")])
    np.testing.assert_allclose(zero_shot_logits("masked_global", text, **{k: f[k] for k in ("global_", "g_h", "g_hc")}).numpy(),
                               100 * mg, rtol=1e-5)


def test_cdul_aggregation_reference():
    f = feats()
    text = torch.randn(K, D)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    sg = softmax(10 * cos(f["global_"], text))
    sl = np.stack([softmax(10 * cos(f["patches"][b], text)) for b in range(B)])  # B, N, K
    a, b_ = sl.max(1), sl.min(1)
    ref = (sg + np.where(a >= 0.3, a, b_)) / 2
    ours = cdul_scores(f["global_"], f["patches"], text, scale=10, threshold=0.3)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"needs \['global_'\]"):
        zero_shot_logits("cdul", text, patches=f["patches"])


@pytest.mark.parametrize("views", ["plain", "all"])
def test_global_views_plain_and_all(views):
    m = make_model(config=dict(global_views=views, global_agg="max"))
    f = feats()
    out = m(**f)
    w = m.kernel.category_embed.detach()
    cs = [cos(f["global_"], w)] + ([cos(f["g_h"], w), cos(f["g_hc"], w)] if views == "all" else [])
    np.testing.assert_allclose(out["global_logits"].detach().numpy(), np.max(cs, axis=0) / 0.07, rtol=1e-5)
    with pytest.raises(ValueError, match="needs `global_`"):
        m(f["patches"], g_h=f["g_h"], g_hc=f["g_hc"])


def test_unknown_global_views_refused():
    with pytest.raises(ValueError, match=r"ModelConfig.global_views must be one of \['masked', 'plain', 'all'\], got 'both'"):
        make_model(config=dict(global_views="both"))
