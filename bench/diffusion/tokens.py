"""Token utilities: placeholder tokens (``<lesion>``, ``<skin>``, concept identifiers) and word positions.

`add_placeholder_tokens` adds tokens to a CLIP tokenizer, grows the text encoder's embedding table and
initialises each new row from the embedding of an initializer word (the mean of its pieces when the word is
several tokens), as Textual Inversion, DreamBooth-style identifiers and AttenCraft do. With
``trainable=True`` the embedding table gets gradients only on the new rows (a gradient hook zeroes the
others), so an optimizer over ``text_encoder.get_input_embeddings().weight`` learns the placeholders alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class PlaceholderTokens:
    """What `add_placeholder_tokens` did.

    Attributes:
        tokens: the placeholder strings.
        ids: their token ids.
        init_ids: per placeholder, the ids of its initializer word's pieces.
        hook: the gradient hook handle (None when frozen); ``hook.remove()`` undoes the row masking.
    """

    tokens: list[str]
    ids: list[int]
    init_ids: list[list[int]]
    hook: Any = None

    def embeddings(self, text_encoder: Any) -> Any:
        """The current embedding rows of the placeholders (T, D)."""
        return text_encoder.get_input_embeddings().weight[self.ids]


def _piece_ids(tokenizer: Any, word: str) -> list[int]:
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"initializer word '{word}' tokenizes to nothing")
    return list(ids)


def add_placeholder_tokens(tokenizer: Any, text_encoder: Any, tokens: list[str], init_words: list[str],
                           trainable: bool = True) -> PlaceholderTokens:
    """Add ``tokens`` to the tokenizer and text encoder, initialised from ``init_words``.

    Args:
        tokenizer: a `CLIPTokenizer` (modified in place).
        text_encoder: a `CLIPTextModel` (embedding table resized in place).
        tokens: new token strings, e.g. ``["<lesion>", "<skin>"]``; must not exist yet.
        init_words: one initializer word per token (e.g. ``["lesion", "skin"]``).
        trainable: make the embedding table trainable on the new rows only; else freeze it.

    Returns:
        a `PlaceholderTokens` record.
    """
    import torch

    if len(tokens) != len(init_words):
        raise ValueError(f"{len(tokens)} placeholder tokens but {len(init_words)} initializer words")
    existing = [t for t in tokens if t in tokenizer.get_vocab()]
    if existing:
        raise ValueError(f"placeholder token(s) already in the vocabulary: {', '.join(existing)}")
    init_ids = [_piece_ids(tokenizer, w) for w in init_words]
    added = tokenizer.add_tokens(list(tokens))
    if added != len(tokens):
        raise ValueError(f"tokenizer added {added} of {len(tokens)} placeholder tokens")
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for new_id, pieces in zip(ids, init_ids):
            table[new_id] = table[pieces].mean(0)
    record = PlaceholderTokens(list(tokens), list(ids), init_ids)
    table.requires_grad_(trainable)
    if trainable:
        keep = torch.zeros(table.shape[0], 1, dtype=table.dtype, device=table.device)
        keep[ids] = 1.0
        record.hook = table.register_hook(lambda grad: grad * keep)
    return record


def token_indices(tokenizer: Any, prompt: str, word: str) -> list[int]:
    """Positions (in the padded token sequence, BOS = 0) of every occurrence of ``word`` in ``prompt``.

    A word made of several tokens contributes all its pieces' positions; a placeholder contributes its one.
    These are the indices that select a word's cross-attention maps.

    Raises:
        ValueError: the word does not occur in the prompt.
    """
    ids = tokenizer(prompt).input_ids
    pieces = tokenizer(word, add_special_tokens=False).input_ids
    out: list[int] = []
    for start in range(len(ids) - len(pieces) + 1):
        if ids[start:start + len(pieces)] == pieces:
            out.extend(range(start, start + len(pieces)))
    if not out:
        raise ValueError(f"'{word}' does not occur in the tokenized prompt '{prompt}'")
    return out
