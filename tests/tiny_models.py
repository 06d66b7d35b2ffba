"""Tiny random-weight models for the tests and the notebooks' examples: nothing is downloaded.

`save_tiny_blip2` writes a BLIP-2 with the real architecture (ViT, Q-Former, OPT) at toy sizes and a word-level
tokenizer trained here, in `save_pretrained` layout, so that `bacgcn.captioner.load_blip2` reads it like a snapshot of
`Salesforce/blip2-opt-2.7b`. Its answers are random words; what it checks is the plumbing (shapes, prompts, batching,
files). Import it as `from tiny_models import save_tiny_blip2` (pytest puts tests/ on the path; a notebook adds it)."""
from __future__ import annotations

from pathlib import Path

# words the tiny model can say: category names of the VOC vocabulary (with the category each names) and filler
CATEGORY_WORDS = {"dog": "dog", "cat": "cat", "car": "car", "person": "person", "boat": "boat", "table": "diningtable",
                  "grass": "grass", "sky": "sky", "road": "road", "water": "water", "tree": "tree"}
FILLER = "a the on in with and of near".split()


def save_tiny_blip2(path, words: list[str] | None = None, seed: int = 1, image_size: int = 24) -> Path:
    "Write a random-weight toy BLIP-2 (model + processor) that can say `words` to `path`; returns `path`."
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                              Blip2VisionConfig, BlipImageProcessor, OPTConfig, PreTrainedTokenizerFast)

    from bacgcn.captioner import CAPTION_PROMPTS, RECAPTION_PROMPTS

    words = list(CATEGORY_WORDS) + FILLER if words is None else words
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Whitespace(), decoders.WordPiece(prefix="##")  # words joined by spaces
    corpus = [" ".join(CAPTION_PROMPTS + RECAPTION_PROMPTS), " ".join(words)]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[EOS]", "[UNK]", "<image>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", bos_token="[EOS]",
                                   unk_token="[UNK]")
    vocab_size, queries = len(fast), 3
    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                        image_size=image_size, patch_size=6).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                          intermediate_size=48, encoder_hidden_size=32, vocab_size=vocab_size).to_dict(),
        # large init: logits far apart, so greedy answers are stable and depend on the image
        text_config=OPTConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, ffn_dim=48,
                              num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0,
                              bos_token_id=1, eos_token_id=1, init_std=0.5).to_dict(),
        num_query_tokens=queries, image_token_index=fast.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    path = Path(path)
    Blip2ForConditionalGeneration(cfg).save_pretrained(path)
    Blip2Processor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=fast,
                   num_query_tokens=queries).save_pretrained(path)
    return path
