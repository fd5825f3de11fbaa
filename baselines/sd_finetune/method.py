"""sd-finetune: full-UNet fine-tuning of the text-to-image backbone with the plain denoising loss (thesis ch. 4,
the "SD-Finetune" / "Finetune" baseline of Tables 4.1, 4.2 and 4.4).

The same training loop, data and hyperparameters as DiDGen (`bench.diffusion.derm_t2i.DermT2I`, the fit and prompts
DiDGen is built on; loop: `bench.diffusion.t2i_finetune.finetune`) with the attention loss off and plain words
instead of placeholder tokens: training prompts are ``"An image of lesion on skin."`` (prefix only with probability
0.2) followed by the caption, generation prompts the prefix (Table 4.1) or the task's prompt (derm-cls class
prompts, ``method.prompt=condition``). Text-only sampling with classifier-free guidance; returns images only. The
model is `bench.diffusion.derm_t2i.PlainT2I` (shared with DreamBooth).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.diffusion.derm_t2i import PlainT2I, PlainT2IConfig


@dataclass(frozen=True)
class SDFinetuneConfig(PlainT2IConfig):
    """DiDGen's fine-tuning options without the attention loss and placeholders (defaults: the paper profile)."""


class SDFinetune(PlainT2I):
    """Fine-tuned text-to-image model sampled from text only."""

    Config = SDFinetuneConfig
    version: ClassVar[str] = "1"
    backbone_owner: ClassVar[str | None] = "SD-Finetune"
