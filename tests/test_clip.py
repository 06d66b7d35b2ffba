"""Tests of bacgcn.clip against independent references: float64 re-derivations of the last block,
open_clip's own encode_image / resize_pos_embed, hand-built masks, and checkpoint round trips."""
import copy
import hashlib
import json
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bacgcn.clip import (ClipBackbone, ClipConfig, find_pretrained, load_clip, mask_patches,
                         n_kept, set_image_size, tiny_clip_config, top_share_mask)
from bacgcn.vocab import Vocab


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return load_clip(model_config=tiny_clip_config(image_size=32), rho=0.5)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=g)


# ---------------------------------------------------------------- float64 reference of the last block
def _ln(x, mod):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias


def _gelu(x):  # exact erf GELU, as nn.GELU()
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _reference(model, x, dense):
    """Everything bb.encode_images returns, recomputed in float64 with plain matmuls for the last block."""
    m = copy.deepcopy(model).double()
    v = m.visual
    x = x.double()
    with torch.no_grad():
        t = v._embeds(x)  # open_clip's own embedding, then all blocks but the last
        for blk in v.transformer.resblocks[:-1]:
            t = blk(t)
        blk = v.transformer.resblocks[-1]
        W = t.shape[-1]
        h = blk.attn.num_heads
        d = W // h
        qkv = _ln(t, blk.ln_1) @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
        q, k, val = qkv[..., :W], qkv[..., W:2 * W], qkv[..., 2 * W:]
        B, L, _ = t.shape
        split = lambda z: z.reshape(B, L, h, d).permute(0, 2, 1, 3)
        q, k, val = split(q), split(k), split(val)
        cls = torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) / math.sqrt(d), -1)[:, :, 0, 1:].mean(1)
        cls = (cls - cls.min(1, keepdim=True).values) / (cls.max(1, keepdim=True).values - cls.min(1, keepdim=True).values)
        if dense == "maskclip":
            o = val
        elif dense == "sclip":
            o = (torch.softmax(q @ q.transpose(-1, -2) / math.sqrt(d), -1) + torch.softmax(k @ k.transpose(-1, -2) / math.sqrt(d), -1)) @ val
        else:
            o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1) @ val
        o = o.permute(0, 2, 1, 3).reshape(B, L, W)
        y = t + o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        z = y + _gelu(_ln(y, blk.ln_2) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias) @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias
        patches = F.normalize(_ln(z[:, 1:], v.ln_post) @ v.proj, dim=-1)
    return patches, cls


@pytest.mark.parametrize("dense", ["maskclip", "sclip", "vanilla"])
def test_dense_modes_match_float64_hand_computation(bb, images, dense):
    out = bb.encode_images(images, dense=dense)
    ref_patches, ref_cls = _reference(bb.model, images, dense)
    assert out["patches"].dtype == torch.float32
    torch.testing.assert_close(out["patches"].double(), ref_patches, atol=2e-5, rtol=0)
    torch.testing.assert_close(out["attn"].double(), ref_cls, atol=2e-5, rtol=0)


def test_shapes_and_normalisation(bb, images):
    out = bb.encode_images(images)
    N, D = bb.n_patches, bb.embed_dim
    assert (N, D) == (16, 32)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"global": (3, D), "patches": (3, N, D), "g_h": (3, D), "g_hc": (3, D), "attn": (3, N), "keep": (3, N)}
    for k in ("global", "patches", "g_h", "g_hc"):
        torch.testing.assert_close(out[k].norm(dim=-1), torch.ones(out[k].shape[:-1]))
    assert out["attn"].min() == 0 and out["attn"].max() == 1


def test_global_equals_open_clip_encode_image(bb, images):
    out = bb.encode_images(images, dense="vanilla")
    with torch.no_grad():
        ref = bb.model.encode_image(images, normalize=True)
    torch.testing.assert_close(out["global"], ref, atol=1e-6, rtol=0)
    # vanilla patches = open_clip's own output tokens, projected
    bb.model.visual.output_tokens = True
    try:
        with torch.no_grad():
            _, tokens = bb.model.visual(images)
    finally:
        bb.model.visual.output_tokens = False
    torch.testing.assert_close(out["patches"], F.normalize(tokens @ bb.model.visual.proj, dim=-1), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- masking
def test_top_share_mask_counts_and_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 196, generator=g)
    for rho in (0.1, 0.25, 0.5, 0.9):
        keep = top_share_mask(a, rho)
        assert keep.sum(1).tolist() == [round(rho * 196)] * 5
        # kept patches are exactly the largest ones
        for i in range(5):
            assert a[i][keep[i]].min() >= a[i][~keep[i]].max()
    ties = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    assert top_share_mask(ties, 0.5).tolist() == [[True, True, True, False, False, False]]
    assert top_share_mask(torch.zeros(1, 4), 0.5).tolist() == [[True, True, False, False]]
    assert n_kept(0.01, 4) == 1 and n_kept(0.99, 4) == 3
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        top_share_mask(a, 0.0)


def test_masked_pixels_equal_mean_and_views_are_reencoded(bb):
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8"))
    x = bb.preprocess(img)[None]  # 1, 3, 32, 32
    out = bb.encode_images(x)
    keep = out["keep"]
    assert int(keep.sum()) == n_kept(bb.config.rho, bb.n_patches) == 8
    # build the masked image by hand, patch by patch
    p, gw = bb.patch_size, bb.grid_size[1]
    xh = x.clone()
    for j in range(bb.n_patches):
        if not keep[0, j]:
            r, c = divmod(j, gw)
            xh[0, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = 0
    torch.testing.assert_close(mask_patches(x, keep, p), xh, atol=0, rtol=0)
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    pixels = xh * std + mean  # back to [0, 1] pixel values
    unkept = ~keep.reshape(1, 1, 4, 4).repeat_interleave(p, 2).repeat_interleave(p, 3).expand(1, 3, 32, 32)
    torch.testing.assert_close(pixels[unkept], mean.expand(1, 3, 32, 32)[unkept])
    with torch.no_grad():
        g_h = bb.model.encode_image(xh, normalize=True)
        g_hc = bb.model.encode_image(x - xh, normalize=True)  # the complement view
    torch.testing.assert_close(out["g_h"], g_h, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["g_hc"], g_hc, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- resolution
def test_pos_embed_interpolation_identity_and_open_clip_reference(bb):
    pe = bb.model.visual.positional_embedding.detach().clone()
    v = copy.deepcopy(bb.model.visual)
    set_image_size(v, 32)
    assert torch.equal(v.positional_embedding, pe)
    # 32 -> 64 px: compare with open_clip's own loader-time resize
    set_image_size(v, 64)
    target = open_clip.CLIP(**tiny_clip_config(image_size=64))
    sd = {"visual.positional_embedding": pe.clone()}
    open_clip.model.resize_pos_embed(sd, target)
    torch.testing.assert_close(v.positional_embedding.detach(), sd["visual.positional_embedding"], atol=1e-6, rtol=0)
    assert torch.equal(v.positional_embedding[0], pe[0])
    assert v.grid_size == (8, 8) and v.image_size == (64, 64)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        set_image_size(v, 60)


def test_vit_b16_at_448():
    bb448 = load_clip("ViT-B-16", "random", image_size=448)
    assert (bb448.n_patches, bb448.embed_dim) == (784, 512)
    assert bb448.model.visual.positional_embedding.shape == (785, 768)
    assert bb448.preprocess.transforms[0].size == 448 and bb448.preprocess.transforms[0].mode == "squash"
    assert isinstance(bb448.model.visual.transformer.resblocks[0].mlp.gelu, torch.nn.GELU)  # random: no QuickGELU


# ---------------------------------------------------------------- weights files
def _save(model, path, kind):
    sd = model.state_dict()
    if kind == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif kind == "safetensors16":
        from safetensors.torch import save_file
        save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    elif kind == "bin":
        torch.save(sd, path)
    elif kind == "pt_wrapped":
        torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    elif kind == "torchscript":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace_module(model.eval(), {"encode_image": (torch.randn(1, 3, 32, 32),)}, check_trace=False)
        traced.save(str(path))


@pytest.mark.parametrize("kind,suffix", [("safetensors", ".safetensors"), ("safetensors16", ".safetensors"),
                                         ("bin", ".bin"), ("pt_wrapped", ".pt"), ("torchscript", ".pt")])
def test_weights_round_trip(tmp_path, images, kind, suffix):
    torch.manual_seed(3)
    cfg = tiny_clip_config()
    model = open_clip.CLIP(**cfg).eval()
    path = tmp_path / f"w{suffix}"
    _save(model, path, kind)
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(cfg))
    if kind == "torchscript":  # OpenAI's format: QuickGELU unless told otherwise (this one was saved from a GELU model)
        assert load_clip(model_config=cfg_file, pretrained=str(path)).activation == "quick_gelu"
    bb = load_clip(model_config=cfg_file, pretrained=str(path), quick_gelu=False if kind == "torchscript" else None)
    assert bb.model_name == "tiny" and bb.activation == "gelu"
    assert bb.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    ref = copy.deepcopy(model)
    if kind == "safetensors16":
        ref.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        want = ref.encode_image(images, normalize=True)
    torch.testing.assert_close(bb.encode_images(images)["global"], want, atol=1e-6, rtol=0)


def test_open_clip_config_json_and_torchscript_alone(tmp_path):
    torch.manual_seed(4)
    cfg = tiny_clip_config()
    model = open_clip.CLIP(**cfg).eval()
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}))
    _save(model, tmp_path / "w.safetensors", "safetensors")
    bb = load_clip(model_config=tmp_path / "open_clip_config.json", pretrained=str(tmp_path / "w.safetensors"), model_name="tinyclip")
    assert bb.model_name == "tinyclip" and bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.25, 0.25, 0.25)
    # an OpenAI-style TorchScript archive describes its own architecture
    _save(model, tmp_path / "ViT-tiny.pt", "torchscript")
    bb2 = load_clip(pretrained=str(tmp_path / "ViT-tiny.pt"))
    assert bb2.model_name == "ViT-tiny"
    got = bb2.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v), k
    assert type(bb2.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_random_fingerprint_tracks_weights():
    torch.manual_seed(0)
    a = load_clip(model_config=tiny_clip_config())
    torch.manual_seed(0)
    b = load_clip(model_config=tiny_clip_config())
    torch.manual_seed(1)
    c = load_clip(model_config=tiny_clip_config())
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert a.weights_source == "random"
    assert a.identity == dict(model_name="custom", architecture=a.architecture, weights_sha256=a.weights_sha256,
                              activation="gelu", image_size=32, geometry="squash", dense="maskclip", rho=0.5)
    assert a.architecture == c.architecture  # same shapes, other weights


def test_missing_and_bad_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_clip(model_config=tiny_clip_config(), pretrained=str(missing))
    with pytest.raises(FileNotFoundError) as e:
        load_clip("ViT-B-16", "openai", cache_dir=str(tmp_path))
    msg = str(e.value)
    for part in ["ViT-B-16.pt", str(tmp_path), "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
                 "create_model_and_transforms('ViT-B-16', pretrained='openai'", "openaipublic"]:
        assert part in msg, part
    with pytest.raises(FileNotFoundError, match="not an open_clip tag"):
        load_clip("ViT-B-16", str(tmp_path / "ViT-B-16.pt"))
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        load_clip("ViT-Q-99", "openai")
    with pytest.raises(ValueError, match="needs `pretrained`"):
        load_clip("ViT-B-16")
    with pytest.raises(FileNotFoundError, match="model config file"):
        load_clip(model_config=tmp_path / "none.json")
    # weights of another architecture
    other = open_clip.CLIP(**tiny_clip_config(width=32))
    _save(other, tmp_path / "other.bin", "bin")
    with pytest.raises(ValueError, match="does not fit the model"):
        load_clip(model_config=tiny_clip_config(), pretrained=str(tmp_path / "other.bin"))
    # same architecture trained at another resolution: refused, not silently resized
    _save(open_clip.CLIP(**tiny_clip_config(image_size=64)), tmp_path / "w64.bin", "bin")
    with pytest.raises(ValueError, match="positional_embedding"):
        load_clip(model_config=tiny_clip_config(image_size=32), pretrained=str(tmp_path / "w64.bin"))
    (tmp_path / "junk.safetensors").write_text("not weights")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_clip(model_config=tiny_clip_config(), pretrained=str(tmp_path / "junk.safetensors"))


def test_tag_found_in_hf_cache_layout(tmp_path):
    snap = tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    (tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "refs").mkdir()
    (tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "refs" / "main").write_text("abc123")
    assert find_pretrained("ViT-B-16", "openai", cache_dir=str(tmp_path)) == snap / "open_clip_model.safetensors"


# ---------------------------------------------------------------- text
def test_encode_categories_is_prompt_ensemble(bb):
    voc = Vocab("toy", ["boat", "dining table"], ["water"], {"dining table": ["dining table", "table"]},
                ["a photo of a {}.", "a blurry photo of a {}.", "a {} in the scene."])
    w = bb.encode_categories(voc)
    assert w.shape == (3, 32) and w.dtype == torch.float32
    tok = open_clip.SimpleTokenizer(context_length=16)
    with torch.no_grad():
        for i, cat in enumerate(voc.categories):
            e = F.normalize(bb.model.encode_text(tok(voc.prompts(cat))).double(), dim=-1)
            torch.testing.assert_close(w[i].double(), F.normalize(e.mean(0), dim=0), atol=1e-6, rtol=0)


def test_config_validation():
    with pytest.raises(ValueError, match="choose one of"):
        ClipConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown ClipConfig fields"):
        load_clip({"model_config": tiny_clip_config(), "rhoo": 0.3})
    bb = load_clip({"model_config": tiny_clip_config(), "rho": 0.25, "dense": "sclip"})
    assert isinstance(bb, ClipBackbone) and bb.config.rho == 0.25 and bb.config.dense == "sclip"
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        bb.encode_images(torch.zeros(1, 1, 32, 32))
