"""Train the synthetic world's tiny CLIP (the files in bacgcn/assets/tinyclip*): alt-text pairs, contrastive loss,
training loop, export, zero-shot diagnostics and model card.

    python tools/train_tinyclip.py --out out/tinyclip --threads 1
    cp out/tinyclip/tinyclip* bacgcn/assets/

The model is an ordinary open_clip `CLIP` (config in `open_clip_config`), trained contrastively on synthetic scenes
(`bacgcn.synth`, scene stream 100) paired with generated alt-texts (`alt_text`). nbs/20_tinyclip.ipynb documents the
shipped model; tests/test_synth.py tests this script."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from bacgcn.config import as_config, cpu_model
from bacgcn.synth import BACKGROUND_PHRASES, BACKGROUNDS, CLASS_NOUNS, CLASSES, PREPOSITION, SynthConfig, affinity_matrix
from bacgcn.synth import make_scene, size_bucket, synth_vocab
from bacgcn.tinyclip import TARGETS, world_diagnostics

FORMAT = "bacgcn.tinyclip/v1 (fp16 open_clip CLIP state dict; token_embedding.weight stored as rows + ids)"
MEAN = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)


@dataclass
class AltTextConfig:
    "How the training alt-text of a scene is written."

    p_template: float = 0.5  # "a photo of a {largest object}." (one of the vocabulary's templates)
    p_background: float = 0.35  # add the largest object's background: "a boat on the water"
    p_second: float = 0.2  # add another object of the scene (a larger one more likely)
    p_background_only: float = 0.1  # name only the main background: "a photo of the sky."
    p_synonym: float = 0.2  # a synonym instead of the prompt name
    p_context: float = 0.0  # name the main background's usual subject instead (seen or not): "a boat" for a lake


@dataclass
class TinyClipConfig:
    "Architecture and training of the tiny CLIP."

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    context_length: int = 16
    embed_dim: int = 128
    steps: int = 1600  # x batch_size = pairs seen (1600 x 128 = 204,800)
    batch_size: int = 128
    lr: float = 1e-3  # AdamW, linear warm-up then cosine decay to 0
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0  # model init and the scene seed of the pair stream
    stream: int = 100  # scene stream of the training pairs (benchmark splits use 1-3, the diagnostics 300-301)
    num_workers: int = 1  # DataLoader workers generating scenes
    threads: int | None = None  # torch threads (None: leave as is)
    alt_text: AltTextConfig = field(default_factory=AltTextConfig)

    def __post_init__(self):
        self.alt_text = as_config(AltTextConfig, self.alt_text)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for what in ("vision", "text"):
            w, h = getattr(self, f"{what}_width"), getattr(self, f"{what}_heads")
            if w % h:
                raise ValueError(f"{what} width {w} is not divisible by its {h} heads")


def open_clip_config(cfg: TinyClipConfig | dict | None = None) -> dict:
    "The plain open_clip model config (as in open_clip's `model_configs/*.json`) of the tiny CLIP."
    c = as_config(TinyClipConfig, cfg)
    vision = dict(image_size=c.image_size, layers=c.vision_layers, width=c.vision_width, patch_size=c.patch_size)
    text = dict(context_length=c.context_length, vocab_size=49408, width=c.text_width, heads=c.text_heads)
    return dict(
        embed_dim=c.embed_dim,
        vision_cfg=dict(vision, head_width=c.vision_width // c.vision_heads),
        text_cfg=dict(text, layers=c.text_layers),
    )


# ---------------------------------------------------------------- alt-texts


def _phrase(c: str, rng: np.random.Generator, p_synonym: float, vocab) -> str:
    forms = CLASS_NOUNS[c]
    sg = forms[rng.integers(1, len(forms))][0] if len(forms) > 1 and rng.random() < p_synonym else vocab.prompt_name(c)
    return sg if sg.endswith("s") and not sg.startswith("pair") else ("an " if sg[0] in "aeiou" else "a ") + sg


def alt_text(scene, rng: np.random.Generator, cfg: AltTextConfig | dict | None = None, vocab=None) -> str:
    "The training text of `scene`: mostly its largest object, sometimes with its background or another object."
    cfg, vocab = as_config(AltTextConfig, cfg), vocab or synth_vocab()
    S = scene.image.shape[0]
    areas = [1.0] if scene.horizon is None else [scene.horizon / S, 1 - scene.horizon / S]
    main_bg = BACKGROUNDS[scene.backgrounds[int(np.argmax(areas))]]
    if rng.random() < cfg.p_background_only:
        return str(rng.choice(vocab.templates)).format(main_bg)
    big = max(scene.instances, key=scene.size)
    c, bg = big.cls, BACKGROUNDS[big.background]
    if cfg.p_context and rng.random() < cfg.p_context:  # web alt-text names the place's topic, not what is seen
        col = affinity_matrix()[:, BACKGROUNDS.index(main_bg)]
        c, bg = int(rng.choice(len(CLASSES), p=col / col.sum())), main_bg
    if rng.random() < cfg.p_template and cfg.p_synonym < 1:
        return str(rng.choice(vocab.templates)).format(vocab.prompt_name(CLASSES[c]))
    text = _phrase(CLASSES[c], rng, cfg.p_synonym, vocab)
    others = [o for o in scene.instances if o.cls != c]
    if others and rng.random() < cfg.p_second:
        w = np.array([scene.size(o) for o in others]) ** 2
        second = others[rng.choice(len(others), p=w / w.sum())]
        text += " and " + _phrase(CLASSES[second.cls], rng, cfg.p_synonym, vocab)
    elif rng.random() < cfg.p_background:
        text += f" {PREPOSITION[bg]} " + str(rng.choice(BACKGROUND_PHRASES[bg]))
    return text


# ---------------------------------------------------------------- pairs and loss


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    "uint8 (B, H, W, 3) -> float (B, 3, H, W) normalised like open_clip's default preprocessing."
    return (x.permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


class AltTextPairs(torch.utils.data.IterableDataset):
    "Endless batches (uint8 images (B, H, W, 3), tokens (B, L)) of synthetic scenes and their alt-texts."

    def __init__(self, cfg: TinyClipConfig, start_batch: int = 0):
        self.cfg, self.start = cfg, start_batch
        self.scene_cfg = SynthConfig(image_size=cfg.image_size, seed=cfg.seed)
        self.tok, self.vocab = open_clip.SimpleTokenizer(context_length=cfg.context_length), synth_vocab()

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, imgs, texts = self.cfg, [], []
        for i in range(k * c.batch_size, (k + 1) * c.batch_size):
            s = make_scene(self.scene_cfg, c.stream, i)
            imgs.append(s.image)
            texts.append(alt_text(s, np.random.default_rng([c.seed, c.stream, i, 1]), c.alt_text, self.vocab))
        return torch.from_numpy(np.stack(imgs)), self.tok(texts)

    def __iter__(self):
        k = self.start
        while True:
            yield self.batch(k)
            k += 1


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor, tokens: torch.Tensor):
    "Symmetric InfoNCE where pairs with identical texts share the target (nbs/20_tinyclip.ipynb)."
    logits = logit_scale.exp() * img @ txt.T  # B, B
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()  # B, B: identical texts
    y = same / same.sum(1, keepdim=True)
    ce = lambda z: torch.sum(-y * F.log_softmax(z, 1), 1).mean()
    return 0.5 * (ce(logits) + ce(logits.T))


# ---------------------------------------------------------------- training


def lr_at(step: int, cfg: TinyClipConfig) -> float:
    "Learning rate at `step`: linear warm-up, then cosine decay to 0 at `cfg.steps`."
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    "Weight decay on matrices only (not on norms, biases, embeddings' 1-d params or the logit scale), as open_clip."
    no_wd = lambda n, p: p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n
    params = list(model.named_parameters())
    return [
        {"params": [p for n, p in params if no_wd(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in params if not no_wd(n, p)], "weight_decay": weight_decay},
    ]


def train(config: TinyClipConfig | dict | None = None, log=None, log_every: int = 50) -> dict:
    "Train the tiny CLIP. Returns model (eval mode), loss history, token ids seen, time."
    cfg = as_config(TinyClipConfig, config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = open_clip.CLIP(**open_clip_config(cfg)).train()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    loader = torch.utils.data.DataLoader(
        AltTextPairs(cfg), batch_size=None, num_workers=cfg.num_workers, prefetch_factor=4 if cfg.num_workers else None
    )
    seen, history, t0 = set(), [], time.time()
    for step, (x, tokens) in zip(range(cfg.steps), loader):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        seen.update(torch.unique(tokens).tolist())
        img = F.normalize(model.encode_image(normalize_images(x)).float(), dim=-1)  # B, D
        txt = F.normalize(model.encode_text(tokens).float(), dim=-1)  # B, D
        loss = contrastive_loss(img, txt, model.logit_scale, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        history.append(loss.item())
        if log and (step + 1) % log_every == 0:
            log(f"step {step + 1}/{cfg.steps} loss {np.mean(history[-log_every:]):.3f} {time.time() - t0:.0f}s")
    return dict(model=model.eval(), history=history, token_ids=sorted(seen), train_time_s=time.time() - t0, config=cfg)


# ---------------------------------------------------------------- export, evaluation, card


def vocab_token_ids(context_length: int = 16) -> list[int]:
    "Token ids of every synonym of every category in every template of the synthetic vocabulary."
    vocab, tok = synth_vocab(), open_clip.SimpleTokenizer(context_length=context_length)
    texts = [t.format(w) for c in vocab.categories for w in vocab.synonyms[c] for t in vocab.templates]
    return sorted(set(torch.unique(tok(texts)).tolist()))


def export(model: torch.nn.Module, out_dir, config: dict, token_ids=()) -> dict:
    """Write `tinyclip_config.json` and `tinyclip.safetensors` (fp16, token embedding kept for `token_ids` + the
    vocabulary's prompts)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(set(token_ids) | set(vocab_token_ids(model.context_length)))
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if k != "token_embedding.weight"}
    sd["token_embedding.rows"] = model.token_embedding.weight.detach()[ids].half().contiguous()
    sd["token_embedding.ids"] = torch.tensor(ids, dtype=torch.int64)
    paths = dict(config=out / "tinyclip_config.json", weights=out / "tinyclip.safetensors")
    paths["config"].write_text(json.dumps(config, indent=2))
    save_file(sd, str(paths["weights"]), metadata={"format": FORMAT, "vocab_size": str(model.vocab_size)})
    return paths


@torch.no_grad()
def pointing(backbone, n_images: int = 300, stream: int = 300, seed: int = 0) -> dict:
    """Pointing game of the dense patch features: for each (image, present class) with a medium or large instance,
    is the patch most similar to the class inside one of its boxes? `chance`: share of patch centres inside."""
    scenes = [make_scene(SynthConfig(image_size=backbone.image_size, seed=seed), stream, i) for i in range(n_images)]
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(backbone.mean).view(1, 3, 1, 1)) / torch.tensor(backbone.std).view(1, 3, 1, 1)
    sims = (backbone(x)["patches"] @ backbone.encode_categories(synth_vocab()).T).numpy()  # n, N, K
    P, g = backbone.patch_size, backbone.grid_size[0]
    cy, cx = np.divmod(np.arange(g * g), g)
    cx, cy = (cx + 0.5) * P, (cy + 0.5) * P  # patch centres
    hits, chance = [], []
    for i, s in enumerate(scenes):
        for c in s.labels:
            boxes = [o.box for o in s.instances if o.cls == c]
            if all(size_bucket(b, backbone.image_size) == "small" for b in boxes):
                continue
            inside = np.zeros(g * g, bool)
            for x0, y0, x1, y1 in boxes:
                inside |= (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
            hits.append(inside[int(np.argmax(sims[i, :, c]))])
            chance.append(inside.mean())
    return dict(maskclip=float(np.mean(hits)), chance=float(np.mean(chance)), n=len(hits))


def reproduce(out_dir, config: TinyClipConfig | dict | None = None, command: str = "", log=print) -> dict:
    """Train, export, reload (as bacgcn.clip loads it) and diagnose the tiny CLIP; writes the checkpoint and
    `tinyclip_card.json` to `out_dir`. Returns the card."""
    from bacgcn.clip import load_clip

    cfg = as_config(TinyClipConfig, config)
    res = train(cfg, log=log)
    files = export(res["model"], out_dir, open_clip_config(cfg), res["token_ids"])
    bb = load_clip(model_config=str(files["config"]), pretrained=str(files["weights"]), model_name="tinyclip-synth")
    t0 = time.time()
    diag = world_diagnostics(bb)
    card = dict(
        name="bacgcn tiny CLIP",
        format=FORMAT,
        open_clip_config=open_clip_config(cfg),
        files={k: p.name for k, p in files.items()},
        weights_bytes=files["weights"].stat().st_size,
        training=dict(
            config=asdict(cfg),
            steps=len(res["history"]),
            pairs=len(res["history"]) * cfg.batch_size,
            train_time_s=round(res["train_time_s"], 1),
            final_loss=float(np.mean(res["history"][-50:])),
            device=f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads",
            torch=torch.__version__,
            open_clip=open_clip.__version__,
        ),
        data=f"bacgcn.synth scenes (SynthConfig defaults, seed {cfg.seed}, stream {cfg.stream}) with alt_text()",
        diagnostics=dict(diag, targets=TARGETS, eval_time_s=round(time.time() - t0, 1)),
        pointing=pointing(bb),
        command=command,
    )
    (Path(out_dir) / "tinyclip_card.json").write_text(json.dumps(card, indent=1))
    return card


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the weights, the config and the card")
    p.add_argument("--steps", type=int, default=TinyClipConfig.steps)
    p.add_argument("--threads", type=int, default=None, help="torch threads (the shipped model: 1)")
    p.add_argument("--alt-text", default="{}", help='AltTextConfig overrides as JSON, e.g. \'{"p_second": 0.05}\'')
    p.add_argument("--config", default="{}", help="other TinyClipConfig overrides as JSON")
    a = p.parse_args(argv)
    cfg = dict(json.loads(a.config), steps=a.steps, threads=a.threads, alt_text=json.loads(a.alt_text))
    command = shlex.join(["python", "tools/train_tinyclip.py", *(sys.argv[1:] if argv is None else argv)])
    card = reproduce(a.out, cfg, command=command)
    print(json.dumps({k: v for k, v in card["diagnostics"].items() if k != "bg_fp_by_class"}, indent=1))
    return card


if __name__ == "__main__":
    main()
