"""Tests of bacgcn.clip against independent references: float64 re-derivations of the last block and of the three
masking readings, the previous implementation of the pixel reading, open_clip's own encode_image / resize_pos_embed,
hand-built masks, and checkpoint round trips."""
import copy
import hashlib
import json
import math
import socket

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bacgcn.clip import (ClipBackbone, ClipConfig, block_qkv, compute_precision, find_pretrained, finish_block,
                         keep_patches, load_clip, masked_cls, n_kept, set_image_size, tiny_clip_config, top_share_mask)
from bacgcn.vocab import Vocab


def tiny(**kw):
    "The tiny random CLIP of every test here (seed 0), with ClipConfig fields `kw`."
    torch.manual_seed(0)
    return load_clip(model_config=tiny_clip_config(image_size=32), rho=0.5, device="cpu", **kw)


@pytest.fixture(scope="module")
def bb():
    return tiny()


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
def test_dense_modes_match_float64_hand_computation(images, dense):
    b = tiny(dense=dense)
    out = b.encode_images(images)
    ref_patches, ref_cls = _reference(b.model, images, dense)
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


def test_uint8_images_are_normalised_as_torchvision_does(bb):
    from torchvision import transforms as T
    img = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype("uint8"))
    u8 = bb.preprocess(img)
    assert u8.dtype == torch.uint8 and u8.shape == (3, 32, 32)
    ref = T.Compose([bb.geometry, T.ToTensor(), T.Normalize(bb.mean, bb.std)])(img)
    assert torch.equal(bb.normalize(u8[None]), ref[None])


def test_global_equals_open_clip_encode_image(images):
    b = tiny(dense="vanilla")
    out = b.encode_images(images)
    with torch.no_grad():
        ref = b.model.encode_image(images, normalize=True)
    torch.testing.assert_close(out["global"], ref, atol=1e-6, rtol=0)
    # vanilla patches = open_clip's own output tokens, projected
    b.model.visual.output_tokens = True
    try:
        with torch.no_grad():
            _, tokens = b.model.visual(images)
    finally:
        b.model.visual.output_tokens = False
    torch.testing.assert_close(out["patches"], F.normalize(tokens @ b.model.visual.proj, dim=-1), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- masking: M^H
def test_top_share_mask_counts_and_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 196, generator=g)
    for rho in (0.1, 0.25, 0.5, 0.9):
        keep = top_share_mask(a, rho)
        assert keep.sum(1).tolist() == [round(rho * 196)] * 5
        for i in range(5):  # kept patches are exactly the largest ones
            assert a[i][keep[i]].min() >= a[i][~keep[i]].max()
    ties = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    assert top_share_mask(ties, 0.5).tolist() == [[True, True, True, False, False, False]]
    assert top_share_mask(torch.zeros(1, 4), 0.5).tolist() == [[True, True, False, False]]
    assert n_kept(0.01, 4) == 1 and n_kept(0.99, 4) == 3
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        ClipConfig(rho=0.0)


# ---------------------------------------------------------------- the pixel reading
def _previous_pixel_implementation(b, x):
    "The pixel reading as bacgcn computed it before the readings existed (mean fill), written out here as the reference."
    v = b.model.visual
    with torch.no_grad():
        t = v.conv1(x)
        t = t.reshape(t.shape[0], t.shape[1], -1).permute(0, 2, 1)
        t = torch.cat([v.class_embedding.view(1, 1, -1).expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        t = v.ln_pre(v.patch_dropout(t + v.positional_embedding.to(t.dtype)))
        for blk in v.transformer.resblocks[:-1]:
            t = blk(t)
        last = v.transformer.resblocks[-1]
        q, k, val = block_qkv(last, t)
        attn = (q[:, :, :1] @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).float().softmax(-1)[:, :, 0, 1:].mean(1)
        attn = (attn - attn.amin(1, keepdim=True)) / (attn.amax(1, keepdim=True) - attn.amin(1, keepdim=True)).clamp_min(1e-12)
        keep = top_share_mask(attn, b.config.rho)
        patches = v.ln_post(finish_block(last, t, val)[:, 1:]) @ v.proj
        g = (v.ln_post(last(t))[:, 0]) @ v.proj
        p, gh = b.patch_size, b.grid_size[0]
        m = keep.reshape(-1, 1, gh, gh).float().repeat_interleave(p, 2).repeat_interleave(p, 3)
        views = torch.cat([x * m, x * (1 - m)])
        u = v.conv1(views)
        u = u.reshape(u.shape[0], u.shape[1], -1).permute(0, 2, 1)
        u = torch.cat([v.class_embedding.view(1, 1, -1).expand(u.shape[0], -1, -1).to(u.dtype), u], dim=1)
        u = v.ln_pre(v.patch_dropout(u + v.positional_embedding.to(u.dtype)))
        for blk in v.transformer.resblocks:
            u = blk(u)
        gv = (v.ln_post(u)[:, 0]) @ v.proj
    n = lambda e: F.normalize(e.float(), dim=-1)
    g_h, g_hc = n(gv).chunk(2)
    return {"global": n(g), "patches": n(patches), "g_h": g_h, "g_hc": g_hc, "attn": attn, "keep": keep}


def test_pixel_reading_is_the_previous_output_bit_for_bit(images):
    b = tiny(masking="pixel", masking_fill="mean")
    out, ref = b.encode_images(images), _previous_pixel_implementation(b, images)
    for k in ref:
        assert torch.equal(out[k], ref[k]), k


@pytest.mark.parametrize("fill", ["mean", "black"])
def test_pixel_views_are_the_masked_images_encoded_again(fill):
    b = tiny(masking="pixel", masking_fill=fill)
    img = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype("uint8"))
    x = b.normalize(b.preprocess(img)[None])  # 1, 3, 32, 32
    out = b.encode_images(x)
    keep = out["keep"]
    assert int(keep.sum()) == n_kept(b.config.rho, b.n_patches) == 8
    black = (0 - torch.tensor(b.mean).view(1, 3, 1, 1)) / torch.tensor(b.std).view(1, 3, 1, 1)
    value = torch.zeros(1, 3, 1, 1) if fill == "mean" else black
    p, gw = b.patch_size, b.grid_size[1]
    views = [x.clone(), x.clone()]  # built by hand, patch by patch
    for j in range(b.n_patches):
        r, c = divmod(j, gw)
        hidden = views[0] if not keep[0, j] else views[1]
        hidden[0, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = value[0]
    torch.testing.assert_close(keep_patches(x, keep, p, 0.0 if fill == "mean" else black), views[0], atol=0, rtol=0)
    pixels = views[0] * torch.tensor(b.std).view(1, 3, 1, 1) + torch.tensor(b.mean).view(1, 3, 1, 1)
    hidden = ~keep.reshape(1, 1, 4, 4).repeat_interleave(p, 2).repeat_interleave(p, 3).expand(1, 3, 32, 32)
    want = torch.tensor(b.mean if fill == "mean" else (0.0, 0.0, 0.0)).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    torch.testing.assert_close(pixels[hidden], want[hidden])  # the hidden patches are the mean colour, or black
    with torch.no_grad():
        want_h, want_hc = (b.model.encode_image(z, normalize=True) for z in views)
    torch.testing.assert_close(out["g_h"], want_h, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["g_hc"], want_hc, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- the attention reading
def _blocks64(b):
    return copy.deepcopy(b.model.visual).double().transformer.resblocks


def test_attention_reading_float64_every_patch_kept_is_g(bb):
    blocks = _blocks64(bb)
    x = torch.randn(2, 17, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    every = torch.ones(2, 16, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(masked_cls(blocks[-1:], [x], every), blocks[-1](x)[:, 0], atol=1e-12, rtol=0)
        ins = [x, blocks[-2](x)]  # the last two blocks: the shared pass' inputs
        torch.testing.assert_close(masked_cls(blocks[-2:], ins, every), blocks[-1](ins[1])[:, 0], atol=1e-12, rtol=0)


def test_attention_reading_float64_one_patch_kept_attends_to_it_alone(bb):
    blk = _blocks64(bb)[-1]
    x = torch.randn(1, 17, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    W, h = 64, blk.attn.num_heads
    d = W // h
    qkv = _ln(x, blk.ln_1) @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias  # by hand, float64
    q, k, v = (qkv[0, :, i * W:(i + 1) * W].reshape(17, h, d).transpose(0, 1) for i in range(3))  # h, L, d
    keys = [0, 1 + 5]  # [cls] and patch 5
    w = torch.softmax(q[:, :1] @ k[:, keys].transpose(-1, -2) / math.sqrt(d), -1)  # h, 1, 2: two logits
    o = (w @ v[:, keys]).transpose(0, 1).reshape(1, W)
    y = x[0, :1] + o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    z = y + _gelu(_ln(y, blk.ln_2) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias) @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias
    allowed = torch.zeros(1, 16, dtype=torch.bool)
    allowed[0, 5] = True
    with torch.no_grad():
        torch.testing.assert_close(masked_cls([blk], [x], allowed), z, atol=1e-12, rtol=0)


def test_attention_reading_shares_g_attn_patches(bb, images):
    pixel, att = bb.encode_images(images), tiny(masking="attention").encode_images(images)
    for k in ("global", "patches", "attn"):
        torch.testing.assert_close(att[k], pixel[k], atol=2e-6, rtol=0)
    assert torch.equal(att["keep"], pixel["keep"])
    assert not torch.allclose(att["g_h"], att["g_hc"])
    two = tiny(masking="attention", masking_blocks=2).encode_images(images)
    torch.testing.assert_close(two["global"], pixel["global"], atol=2e-6, rtol=0)
    assert not torch.allclose(two["g_h"], att["g_h"], atol=1e-4)


def test_token_drop_encodes_the_visible_tokens_only(images):
    b = tiny(masking="token_drop")
    out = b.encode_images(images)
    v = copy.deepcopy(b.model.visual).double()
    x = images.double()
    with torch.no_grad():
        tok = v.conv1(x).flatten(2).transpose(1, 2) + v.positional_embedding[1:]  # B, N, W
        for key, m in (("g_h", out["keep"]), ("g_hc", ~out["keep"])):
            rows = []
            for i in range(len(x)):  # one image at a time, with open_clip's own transformer
                t = torch.cat([(v.class_embedding + v.positional_embedding[0])[None], tok[i][m[i]]])[None]
                rows.append(v.ln_post(v.transformer(v.ln_pre(t))[:, 0]) @ v.proj)
            torch.testing.assert_close(out[key].double(), F.normalize(torch.cat(rows), dim=-1), atol=2e-6, rtol=0)


def test_readings_are_part_of_the_identity():
    ids = {r: tiny(**kw).identity["masking"] for r, kw in
           {"p": {}, "pm": {"masking_fill": "mean"}, "a": {"masking": "attention"}, "a2": {"masking": "attention", "masking_blocks": 2},
            "t": {"masking": "token_drop"}}.items()}
    assert ids == {"p": "pixel/black", "pm": "pixel/mean", "a": "attention/1", "a2": "attention/2", "t": "token_drop"}
    with pytest.raises(ValueError, match="only 2 blocks"):
        tiny(masking="attention", masking_blocks=2 + 5).encode_images(torch.zeros(1, 3, 32, 32))


# ---------------------------------------------------------------- precision
def test_precision_is_feature_detected(monkeypatch):
    import bacgcn.clip as clip
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(clip, "cpu_has_bf16", lambda: False)
    assert compute_precision("auto", cpu) == "fp32" and compute_precision("auto", cuda) == "fp16"
    monkeypatch.setattr(clip, "cpu_has_bf16", lambda: True)
    assert compute_precision("auto", cpu) == "bf16"
    with pytest.raises(ValueError, match="CPU option"):
        compute_precision("int8", cuda)


def test_int8_is_close_to_fp32_and_has_its_own_identity(bb, images):
    q = tiny(precision="int8")
    assert q.identity["int8"] and not bb.identity["int8"] and q.precision == "int8"
    a, b = bb.encode_images(images), q.encode_images(images)
    for k in ("global", "g_h", "g_hc"):
        cos = (a[k] * b[k]).sum(-1)
        assert cos.min() > 0.98 and not torch.equal(a[k], b[k]), (k, cos)
    assert "quantized.dynamic" in type(q.model.visual.transformer.resblocks[0].mlp.c_fc).__module__

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



@pytest.mark.slow
def test_vit_b16_at_448_forward_matches_open_clip_resized():
    "ViT-B/16 at 448: 28x28 patches, and g equals open_clip's own model built at 448 from the same weights."
    torch.manual_seed(0)
    bb448 = load_clip("ViT-B-16", "random", image_size=448, masking="attention", device="cpu")
    assert (bb448.n_patches, bb448.embed_dim, bb448.grid_size) == (784, 512, (28, 28))
    assert bb448.model.visual.positional_embedding.shape == (785, 768)
    torch.manual_seed(0)
    native = open_clip.create_model("ViT-B-16", pretrained=None)
    ref = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=448).eval()
    sd = native.state_dict()
    open_clip.model.resize_pos_embed(sd, ref)  # open_clip's loader-time resize
    ref.load_state_dict(sd)
    x = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    out = bb448.encode_images(x)
    assert out["patches"].shape == (1, 784, 512) and int(out["keep"].sum()) == 392
    with torch.no_grad():
        want = ref.encode_image(x, normalize=True)
    torch.testing.assert_close(out["global"], want, atol=1e-4, rtol=0)

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
                              activation="gelu", image_size=32, geometry="squash", dense="maskclip", rho=0.5,
                              masking="pixel/black", int8=False)
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




def test_unknown_activation_of_a_vit_b16_state_dict_is_refused(tmp_path):
    "ViT-B/16 weights exist with QuickGELU (OpenAI) and GELU: a state-dict file of unknown origin needs quick_gelu."
    f = tmp_path / "converted-vit-b-16.safetensors"
    f.write_bytes(b"the activation is decided before the weights are read")
    with pytest.raises(ValueError, match="quick_gelu=True for OpenAI's weights") as e:
        load_clip("ViT-B-16", str(f))
    assert "\n" not in str(e.value)  # one line
    with pytest.raises(ValueError, match="not a readable checkpoint"):  # with quick_gelu set, it goes on to read them
        load_clip("ViT-B-16", str(f), quick_gelu=True)

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
    b = load_clip({"model_config": tiny_clip_config(), "rho": 0.25, "dense": "sclip"})
    assert isinstance(b, ClipBackbone) and b.config.rho == 0.25 and b.config.dense == "sclip"
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        b.encode_images(torch.zeros(1, 1, 32, 32))


def test_hub_names_are_read_offline_only(tmp_path):
    dialled = []
    real = socket.socket.connect
    socket.socket.connect = lambda self, addr: dialled.append(addr) or real(self, addr)
    try:
        with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
            load_clip("hf-hub:some-org/some-clip", cache_dir=str(tmp_path))
        with pytest.raises(FileNotFoundError):
            load_clip(f"local-dir:{tmp_path}")
    finally:
        socket.socket.connect = real
    assert dialled == []
