"""A tiny, randomly initialised BERT with a fixed word-level tokenizer, saved locally in Hugging Face format."""

from __future__ import annotations

from pathlib import Path

from shared.tasks.text.demo import COMMON, FINDINGS

WORDS = sorted({w for f in [*COMMON, *(f for v in FINDINGS.values() for f in v)] for w in f.split()})


def tiny_bert(folder: Path, layers: int = 2) -> Path:
    """Write config.json, model.safetensors and tokenizer.json to `folder` (no download); return it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder
