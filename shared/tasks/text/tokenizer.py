"""Tokenizers fixed before training, so no vocabulary is ever built from (pooled) site text.

A vocabulary learnt from the sites' notes would itself leak rare words (names, places, identifiers) to every
party that receives the model. "hashing" and "bytes" depend on no data at all; a pretrained tokenizer was built
elsewhere, before the study, and is read from a local file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import numpy as np
from sklearn.utils import murmurhash3_32

PAD = 0
WORD = re.compile(r"\w+", re.UNICODE)


class Tokenizer(Protocol):
    """Text to token ids; id `pad_id` is padding and never a real token."""

    pad_id: int
    vocab_size: int

    def tokens(self, text: str) -> list[int]:
        """The note's token ids, untruncated."""


class HashingTokenizer:
    """Lower-cased words hashed with MurmurHash3 (as scikit-learn's HashingVectorizer) into ids 1..vocab-1."""

    pad_id = PAD

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def tokens(self, text: str) -> list[int]:
        """One id per word."""
        return [
            murmurhash3_32(w, seed=0, positive=True) % (self.vocab_size - 1) + 1 for w in WORD.findall(text.lower())
        ]


class ByteTokenizer:
    """UTF-8 bytes as ids 1..256: any language, any spelling, no vocabulary at all."""

    pad_id = PAD
    vocab_size = 257

    def tokens(self, text: str) -> list[int]:
        """One id per byte."""
        return [b + 1 for b in text.encode("utf-8")]


class PretrainedTokenizer:
    """A Hugging Face `tokenizer.json` from the pretrained model's local folder, via the `tokenizers` library."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.inner = HFTokenizer.from_file(str(path))
        self.inner.no_truncation()
        self.inner.no_padding()
        pad = next((t for t in ("[PAD]", "<pad>") if self.inner.token_to_id(t) is not None), None)
        self.pad_id = self.inner.token_to_id(pad) if pad else PAD
        self.vocab_size = self.inner.get_vocab_size()

    def tokens(self, text: str) -> list[int]:
        """Ids with the model's special tokens ([CLS] ... [SEP] for BERT-style models)."""
        return self.inner.encode(text).ids


def framing(tokenizer: Tokenizer) -> int:
    """How many ids even an empty note gets: a pretrained model's special tokens ([CLS] [SEP]), else none."""
    return len(tokenizer.tokens(""))


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_length) padded ids, and each note's untruncated length (to count truncations)."""
    ids = np.full((len(texts), max_length), tokenizer.pad_id, dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        tokens = tokenizer.tokens(text)
        lengths[i] = len(tokens)
        ids[i, : min(len(tokens), max_length)] = tokens[:max_length]
    return ids, lengths
