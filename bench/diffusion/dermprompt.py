"""DermPrompt machinery shared by the dermoscopy text-to-image models (DiDGen and the baselines built on the same
backbone: SD-Finetune, DreamBooth, ZestGuide, Attn-Refocus, ControlNet, IP-Adapter; issue 22 "Structure": a method
folder can be removed without breaking a baseline). Moved from ``methods/didgen`` (``prompts.py``, ``backbone.py``,
``generate.encode_prompts``), which re-export these names.

DermPrompt (thesis ch. 4 section 4.3.2): attribute captions turned into training prompts with placeholder tokens.

A caption comes from a per-image caption file (any vision-language model can write it; `read_caption_file`) or,
for derm-mini, from the ground-truth attributes (``Sample.prompt``). Each time an example is drawn (reference code,
``Skindataset.__getitem__``): ``lesion`` -> ``<lesion>`` and ``skin`` -> ``<skin>`` by plain substring replacement
(so ``lesions`` -> ``<lesion>s``), then with probability ``prefix_only_rate`` (0.2) the prompt is the prefix alone,
otherwise the prefix, a space and the caption. The placeholders sit at token positions 4 and 6 of the prefix.
"""
from __future__ import annotations

import csv
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

LESION, SKIN = "<lesion>", "<skin>"
PREFIX = f"An image of {LESION} on {SKIN}."
PLAIN_PREFIX = "An image of lesion on skin."


def strip_prefix(caption: str) -> str:
    """The caption without a leading DermPrompt prefix (derm-mini captions start with the plain prefix)."""
    text = caption.strip()
    for prefix in (PREFIX, PLAIN_PREFIX):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text


def with_placeholders(caption: str) -> str:
    """Plain substring replacement, as the reference code: ``lesion`` -> ``<lesion>``, ``skin`` -> ``<skin>``."""
    return caption.replace("lesion", LESION).replace("skin", SKIN)


def training_prompt(caption: str | None, rng: random.Random, prefix_only_rate: float = 0.2,
                    use_placeholders: bool = True) -> str:
    """The prompt of one training draw: the prefix alone with probability ``prefix_only_rate``, else prefix + caption.

    Args:
        caption: the DermPrompt caption (without prefix); None or empty gives the prefix.
        rng: the draw's random generator (seeded by the caller for reproducibility).
        use_placeholders: False gives the plain-word prompt of the SD-Finetune / DreamBooth baselines.
    """
    prefix = PREFIX if use_placeholders else PLAIN_PREFIX
    if not caption or rng.random() < prefix_only_rate:
        return prefix
    body = with_placeholders(caption) if use_placeholders else caption
    return f"{prefix} {body}"


def read_caption_file(path: str | Path) -> dict[str, str]:
    """Captions by image id from a CSV with columns ``id`` (the dataset's sample id, e.g. ``ISIC_0000000``) and
    ``caption`` (one attribute sentence, under 77 tokens, without the prefix). Other columns are ignored."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"caption file not found: {path} (CSV with columns id, caption)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"caption file {path} lacks column(s) {sorted(missing)}; has {reader.fieldnames}")
        return {row["id"]: row["caption"] for row in reader}


def read_prompt_file(path: str | Path) -> list[tuple[str, str | None]]:
    """Inference DermPrompts: a CSV with a ``caption`` column (and optionally ``class``) or a text file with one
    prompt per line; returns (prompt without prefix, class or None) pairs. Empty lines are skipped."""
    from bench.errors import UserInputError

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"method.prompt_file: {path} not found (a text file, one DermPrompt per line, or a CSV "
                             f"with a caption column)")
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text.strip() else ""
    if path.suffix.lower() == ".csv" or first.strip().lower().startswith("caption") or "caption," in first:
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "caption" not in rows[0]:
            raise UserInputError(f"method.prompt_file: {path} has no caption column (header: {first!r})")
        out = [(strip_prefix(r["caption"]), (r.get("class") or "").strip() or None) for r in rows if r["caption"].strip()]
    else:
        out = [(strip_prefix(line), None) for line in text.splitlines() if line.strip()]
    if not out:
        raise UserInputError(f"method.prompt_file: {path} holds no prompt")
    return out


def placeholder_positions(token_ids: list[int], placeholder_ids: list[int]) -> list[int]:
    """Positions of the first two occurrences of any placeholder id (the prefix's ``<lesion>`` and ``<skin>``),
    as the reference code finds them; occurrences inside the caption are ignored."""
    found = [i for i, t in enumerate(token_ids) if t in placeholder_ids][:2]
    if len(found) < 2:
        raise ValueError(f"prompt holds {len(found)} placeholder token(s); the prefix must hold <lesion> and <skin>")
    return found


# -- backbone (from methods/didgen/backbone.py) ------------------------------------------------------------


def load_backbone(backbone: str, owner: str = "") -> Any:
    """`SDComponents` of ``backbone`` (``mini-sd`` or a local diffusers folder; nothing is downloaded). ``owner``
    names the method in the error of a missing folder."""
    from bench.diffusion.models import load_mini_sd, load_sd

    if backbone == "mini-sd":
        return load_mini_sd()
    if not Path(backbone).expanduser().is_dir():
        raise FileNotFoundError(f"{owner + ' ' if owner else ''}backbone folder not found: {backbone} (a diffusers Stable Diffusion folder, "
                                "e.g. stable-diffusion-2-1-base saved with save_pretrained, or 'mini-sd')")
    return load_sd(Path(backbone).expanduser())


def load_backbone_at(backbone: str, resolution: int, owner: str = "") -> Any:
    """`load_backbone`, refusing a ``method.resolution`` that the backbone's latent codec cannot downsample."""
    parts = load_backbone(backbone, owner)
    check_resolution(parts, resolution)
    return parts


def check_resolution(parts: Any, resolution: int) -> None:
    """One error line when ``resolution`` is not a multiple of the codec's downsampling factor."""
    if resolution % parts.codec.factor:
        raise ValueError(f"method.resolution={resolution} is not a multiple of the backbone's downsampling factor "
                         f"{parts.codec.factor}")


def add_frozen_placeholders(parts: Any) -> list[int]:
    """Add ``<lesion>``/``<skin>`` initialised as copies of ``lesion``/``skin`` and keep the whole text encoder
    frozen, as the reference code does; returns their token ids."""
    from bench.diffusion.tokens import add_placeholder_tokens

    record = add_placeholder_tokens(parts.tokenizer, parts.text_encoder, [LESION, SKIN], ["lesion", "skin"],
                                    trainable=False)
    parts.text_encoder.requires_grad_(False)
    return list(record.ids)


# -- prompt encoding (from methods/didgen/generate.py) ----------------------------------------------------
@dataclass
class PromptInputs:
    """Encoded prompts of one batch: ``cond`` (N, L, D), ``uncond`` (1, L, D), ``positions`` (N, 2) of
    ``<lesion>``/``<skin>``, ``eots`` (end-of-text position per prompt)."""

    cond: torch.Tensor
    uncond: torch.Tensor
    positions: torch.Tensor
    eots: list[int]


def encode_prompts(parts: Any, prompts: Sequence[str], placeholder_ids: list[int]) -> PromptInputs:
    """Text embeddings and placeholder positions of ``prompts`` (each starting with the placeholder prefix)."""
    ids = parts.token_ids(list(prompts))
    positions = torch.tensor([placeholder_positions(row.tolist(), placeholder_ids)[:2] for row in ids])
    eots = [len(parts.tokenizer(p, truncation=True, max_length=parts.tokenizer.model_max_length).input_ids) - 1
            for p in prompts]
    with torch.no_grad():
        cond = parts.text_encoder(input_ids=ids).last_hidden_state.float()
        uncond = parts.encode_prompt([""]).float()
    return PromptInputs(cond=cond, uncond=uncond, positions=positions, eots=eots)
