"""A CLIP tokenizer built offline, whose BPE merges spell out whole words of the mini worlds.

`transformers.CLIPTokenizer` reads a ``vocab.json`` and a ``merges.txt``. Here both are written by code,
by training a byte-pair encoding on the word list until every word is merged into one token. Known words therefore become single
tokens (``"circle"`` -> ``circle</w>``), unknown words fall back to characters (no UNK token is
needed), and placeholder tokens (``<lesion>``, ``<skin>``, concept identifiers) are added with the
tokenizer's own ``add_tokens``. The same builder makes the tokenizer of the tiny random Stable
Diffusion folders, so the mini and the paper code paths tokenize through the same class.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: Words every mini tokenizer knows besides the worlds' own (prompt templates of the methods).
TEMPLATE_WORDS = ("an", "image", "photo", "picture", "of", "the", "on", "in", "with", "lesion", "skin", "chest", "x",
                  "ray", "radiograph", "scene", "object", "objects", "two", "one", "background", "dermoscopy",
                  "dermoscopic", "pattern", "center", "normal", "finding", "findings", "impression")


def write_word_bpe(words: Iterable[str], folder: Path) -> tuple[Path, Path]:
    """Train a byte-pair encoding on ``words`` until every word is one token; write ``vocab.json`` + ``merges.txt``.

    Training BPE (tokenizers' `BpeTrainer`, unlimited vocabulary) on the word list makes merges whose greedy
    application rebuilds each training word as a single ``word</w>`` token; the printable ASCII alphabet is
    always included, so any other string still tokenizes (as pieces or characters).

    Args:
        words: words (lower-cased; order does not matter, they are sorted for determinism).
        folder: output folder (created).

    Returns:
        paths of the vocabulary and merges files (CLIP's format, ``#version: 0.2`` header).

    Note: `tokenizers` breaks ties between equally frequent pairs in an order that varies between processes,
    so token ids are not reproducible run to run; the mini models ship their tokenizer files.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = [chr(c) for c in range(33, 127)]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=1_000_000, min_frequency=0, special_tokens=[BOS, EOS],
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False)
    bpe.train_from_iterator(sorted({w.lower() for w in words}) + alphabet, trainer)
    bpe.model.save(str(folder))
    return folder / "vocab.json", folder / "merges.txt"


def build_clip_tokenizer(words: Iterable[str], folder: Path, model_max_length: int = 77) -> Any:
    """Build (and save to ``folder``) a `transformers.CLIPTokenizer` whose known words are single tokens.

    Args:
        words: the vocabulary's words.
        folder: where ``vocab.json``, ``merges.txt`` and the tokenizer config are written.
        model_max_length: padded sequence length (77 as in Stable Diffusion).

    Returns:
        the tokenizer (pad token = ``<|endoftext|>``, as in Stable Diffusion).
    """
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_word_bpe(words, folder)
    tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=model_max_length,
                              bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def mini_world_words() -> list[str]:
    """Every word of the mini worlds: generic world, concept-mini, derm-mini captions, IU X-ray reports."""
    from bench.data import cxr_mini, generic_world
    from bench.data.derm_mini import CLASS_STYLES

    words = set(TEMPLATE_WORDS) | set(generic_world.vocabulary()) | set(cxr_mini.report_words())
    derm_text = " ".join(
        ["an image of lesion on skin small medium large irregular regular with pattern in the center upper lower left",
         "right central on very light intermediate tan brown dark skin hair dark corners ruler marks and"]
        + [f"{s.colour} {s.texture}" for s in CLASS_STYLES.values()])
    words |= set(re.findall(r"[a-z]+", derm_text))
    try:
        from bench.data import concept_mini

        words |= set(concept_mini.vocabulary())
    except ImportError:  # concept-mini is optional for the vocabulary
        pass
    return sorted(words)
