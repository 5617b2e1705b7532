"""Tokenizers are fixed before training: deterministic, and independent of any site's text."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from shared.tasks.text.tokenizer import ByteTokenizer, HashingTokenizer, encode


def test_hashing_ids_are_deterministic_across_processes():
    text = "Patient reports Chest pain; troponin elevated."
    here = HashingTokenizer(4096).tokens(text)
    code = f"from shared.tasks.text.tokenizer import HashingTokenizer; print(HashingTokenizer(4096).tokens({text!r}))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert str(here) == there.strip()  # no per-process hash salt
    assert here[:2] == HashingTokenizer(4096).tokens("patient REPORTS")  # lower-cased words
    assert all(1 <= i < 4096 for i in here)  # 0 is padding


def test_ids_do_not_depend_on_what_else_a_site_holds():
    a = HashingTokenizer(4096)
    before = a.tokens("seizure and headache")
    encode(a, ["a rare name Zyxwv at one site"] * 50, 16)  # tokenizing other notes learns nothing
    assert a.tokens("seizure and headache") == before == HashingTokenizer(4096).tokens("seizure and headache")


def test_bytes_cover_any_text_and_encode_pads_and_counts_truncation():
    ids, lengths = encode(ByteTokenizer(), ["é", "x" * 40], 8)
    assert ids[0, :2].tolist() == [0xC3 + 1, 0xA9 + 1] and (ids[0, 2:] == 0).all()
    assert lengths.tolist() == [2, 40] and ids.shape == (2, 8) and (ids[1] == ord("x") + 1).all()
    assert ids.dtype == np.int64
