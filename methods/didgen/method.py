"""DiDGen (thesis chapter 4; Shentu et al., MICCAI 2025): region-aware fine-tuning and training-free
lesion-mask pair generation. See README.md for every thesis-vs-code decision."""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiDGenConfig:
    """DiDGen hyperparameters; defaults are the paper profile (spec sections 1.3, 1.4)."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (paper: stable-diffusion-2-1-base)."""
    resolution: int = 512
    """Training/generation side in pixels (paper: 512; mini-sd: 32)."""
    caption_file: str | None = None
    """CSV (id, caption) of DermPrompt captions; None uses ``Sample.prompt`` (derm-mini's attribute captions)."""
    use_placeholders: bool = True
    """Prompts with ``<lesion>``/``<skin>`` (DiDGen) or the plain words (SD-Finetune / DreamBooth)."""
    prefix_only_rate: float = 0.2
    """Probability of the prefix-only training prompt (code: 0.2)."""
    steps: int = 20000
    """Fine-tuning steps (paper: 20 000)."""
    batch_size: int = 4
    """Fine-tuning batch size (paper: 4)."""
    lr: float = 1e-5
    """AdamW learning rate (paper: 1e-5)."""
    warmup_steps: int = 500
    """Linear warm-up steps of the constant schedule (code: 500)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (code: 1e-2)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (code: 1.0)."""
    attn_weight: float = 0.1
    """alpha of L = L_rec + alpha L_attn (paper: 0.1; 0 gives plain fine-tuning)."""
    train_seed: int = 42
    """Fine-tuning seed (code: 42), mixed with the run seed."""
    ca_res: int = 16
    """Side of the cross-attention maps used (SD 2.1-base at 512 px: 16; mini-sd: 8)."""
    sa_res: int = 32
    """Side of the self-attention maps used (SD 2.1-base at 512 px: 32; mini-sd: 16)."""
    prompt: Literal["prefix", "dermprompt", "condition"] = "prefix"
    """Generation prompt: the prefix (code default), prefix + a DermPrompt drawn from the training captions
    (offline stand-in for the LLM-written new DermPrompts), or the task's prompt (class prompts of derm-cls)."""
    sampler: str = "pndm"
    """Sampler (code: the SD 2.1-base default PNDM)."""
    sample_steps: int = 50
    """Sampling steps (code: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight (code: 7.5)."""
    ca_guidance: bool = True
    """Use L_CA in layout guidance (Table 4.7 ablation: False)."""
    sa_guidance: bool = True
    """Use L_SA in layout guidance."""
    eta: float = 20.0
    """Guidance step size (paper: 20)."""
    eta_range: tuple[float, float] = (1.0, 0.5)
    """sqrt-linspace decay of the step size (code)."""
    guidance_fraction: float = 0.5
    """Fraction of the sampling iterations with guidance (paper: first 50 %)."""
    softmax_scale: float = 100.0
    """Token softmax temperature of the CA maps (code: 100)."""
    gaussian_smoothing: bool = False
    """Smooth the CA maps (thesis text: yes; released code: no)."""
    tau: int = 4
    """Matrix power of A_S in the mask read-out (paper: 4)."""
    closing_kernel: int = 5
    """Closing element diameter at the output side (thesis: closing, size unstated; code: none = 0)."""
    largest_component: bool = False
    """Keep only the largest connected component of the read-out mask."""
    readout_step: Literal["last", "second-to-last"] = "last"
    """Iteration of the read-out (paper: the final step; code with PNDM: the second-to-last)."""
    generate_batch: int = 8
    """Pairs generated together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if not 0 <= self.prefix_only_rate <= 1:
            raise ConfigError(f"method.prefix_only_rate must be in [0, 1], got {self.prefix_only_rate}")
        if self.attn_weight > 0 and not self.use_placeholders:
            raise ConfigError("method.attn_weight > 0 needs method.use_placeholders (the loss reads <lesion>/<skin>)")


class DiDGen(GeneratorBase):
    """Fine-tunes a text-to-image UNet with the region-aware attention loss; generates images with masks read out
    of attention, following a given mask by layout guidance or unconditioned."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}))
    Config = DiDGenConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({
        "prompt", "sampler", "sample_steps", "guidance_scale", "ca_guidance", "sa_guidance", "eta", "eta_range",
        "guidance_fraction", "softmax_scale", "gaussian_smoothing", "tau", "closing_kernel", "largest_component",
        "readout_step", "generate_batch"})

    def __init__(self, config: DiDGenConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.placeholder_ids: list[int] = []
        self.captions: list[str] = []
        self.log: list[dict[str, float]] = []

    # -- model -------------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        if self.parts is None:
            from .backbone import add_frozen_placeholders, load_backbone

            self.parts = load_backbone(self.config.backbone)
            self.placeholder_ids = add_frozen_placeholders(self.parts)

    def _captions_for(self, samples: Sequence[Sample]) -> list[str | None]:
        from .prompts import read_caption_file, strip_prefix

        table = read_caption_file(self.config.caption_file) if self.config.caption_file else None
        out: list[str | None] = []
        for s in samples:
            text = table.get(str(s.meta.get("id"))) if table is not None else s.prompt
            out.append(strip_prefix(text) if text else None)
        return out

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image, resize_mask

        from .train import finetune

        self._ensure_model()
        c = self.config
        images = torch.stack([resize_image(s.image, c.resolution) for s in train])
        masks = torch.stack([resize_mask(s.mask, c.resolution).float() if s.mask is not None
                             else torch.zeros(c.resolution, c.resolution) for s in train])
        if c.attn_weight > 0 and not all(s.mask is not None for s in train):
            raise ValueError("DiDGen's attention loss needs a mask for every training image (set method.attn_weight=0)")
        captions = self._captions_for(train)
        self.captions = [cap for cap in captions if cap]
        self.log = finetune(self.parts, images, masks, captions, self.placeholder_ids, c,
                            seed=derive_seed(c.train_seed, ctx.seed), advance=ctx.progress("fine-tune", c.steps))

    def _prompt(self, cond: Condition, index: int) -> str:
        from .prompts import PLAIN_PREFIX, PREFIX, with_placeholders

        c = self.config
        prefix = PREFIX if c.use_placeholders else PLAIN_PREFIX
        if c.prompt == "condition" and cond.prompt:
            text = cond.prompt
            if not c.use_placeholders:
                text = text.replace("<lesion>", "lesion").replace("<skin>", "skin")
            return text if text.startswith(prefix) else f"{prefix} {text}"
        if c.prompt == "dermprompt" and self.captions:
            caption = random.Random(index).choice(self.captions)
            return f"{prefix} {with_placeholders(caption) if c.use_placeholders else caption}"
        return prefix

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from .generate import generate_pairs

        self._ensure_model()
        c = self.config
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            prompts = [self._prompt(cond, i) for cond, i in zip(chunk, index)]
            seeds = [derive_seed(ctx.seed, 17, i) for i in index]
            images, masks = generate_pairs(self.parts, prompts, [cond.mask for cond in chunk], seeds,
                                           self.placeholder_ids, c)
            for k, cond in enumerate(chunk):
                meta = {"prompt": prompts[k], "source_id": cond.meta.get("source_id")}
                if cond.mask is not None:
                    from bench.tasks.common import resize_mask

                    target = resize_mask(cond.mask, masks.shape[-1])
                    inter, union = (target & masks[k]).sum(), (target | masks[k]).sum()
                    meta["condition_iou"] = float(inter / union) if union else 1.0
                yield Sample(image=images[k], mask=masks[k], label=cond.label, prompt=prompts[k], meta=meta)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.parts.unet.state_dict().items()}, str(path / "unet.safetensors"))
        (path / "didgen.json").write_text(json.dumps({"config": asdict(self.config), "captions": self.captions,
                                                      "log": self.log[-50:]}, default=str))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self._ensure_model()
        self.parts.unet.load_state_dict(load_file(str(path / "unet.safetensors")))
        self.captions = json.loads((path / "didgen.json").read_text())["captions"]
