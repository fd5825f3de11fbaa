"""controlnet: a mask-conditioned ControlNet (Zhang et al., ICCV 2023) trained on the task's (image, mask) pairs over
a frozen text-to-image backbone; the "ControlNet" baseline of thesis chapter 4 (Tables 4.5-4.7, conditioned on
DiDGen's generated masks) and chapter 5 (Tables 5.x, conditioned on the proposed method's masks).

The thesis gives no prompt, no conditioning format and no sampler; the choices (spec ``research/ch4_didgen.md``
section 4 and ``research/ch5_lowcontrast.md`` baselines table) are options with the recommended values as defaults:
the ControlNet is initialised from the backbone's UNet, the mask enters as a 3-channel image in [0, 1], every
training pair has the caption ``"An image of lesion on skin."``, only the ControlNet is trained (AdamW, lr 1e-5,
batch 4, 20 000 steps as DiDGen), and sampling is SD's PNDM with classifier-free guidance, the ControlNet's
residuals added on both branches. Each generated sample is the image with the mask it was conditioned on.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

#: Folder of the trained ControlNet inside the fit state (diffusers ``save_pretrained`` layout, safetensors).
CONTROLNET_DIR = "controlnet"
STATE_FILE = "controlnet.json"


@dataclass(frozen=True)
class ControlNetConfig:
    """ControlNet baseline options; defaults are the paper profile ([I]: the thesis leaves it open)."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (paper: stable-diffusion-2-1-base [I])."""
    resolution: int = 512
    """Training/generation side in pixels (paper: 512; mini-sd: 32); masks are resized to it (nearest)."""
    conditioning_channels: int = 3
    """Channels of the conditioning image: 3 = the mask repeated as an RGB image in [0, 1] (ch. 5 spec [A], the
    format of diffusers' ``train_controlnet.py``), 1 = the bare mask."""
    conditioning_embedding_channels: tuple[int, ...] | None = None
    """Widths of the ControlNet's conditioning embedding; None derives them from the codec's factor (SD's VAE:
    diffusers' default 16, 32, 96, 256; pixel-space mini-sd: 16)."""
    prompt: str = "An image of lesion on skin."
    """Caption of every training pair and generation prompt (thesis: none given; spec [A]: the plain prefix)."""
    condition_prompt: bool = False
    """Generate from the Condition's prompt when it carries one (placeholders ``<lesion>``/``<skin>`` replaced by
    the plain words) instead of ``prompt``."""
    empty_prompt_rate: float = 0.0
    """Probability of training with the empty prompt (diffusers' ``proportion_empty_prompts``, default 0; the
    ControlNet paper uses 0.5)."""
    steps: int = 20000
    """Training steps (DiDGen's 20 000 [I])."""
    batch_size: int = 4
    """Training batch size (thesis DM setting: 4)."""
    lr: float = 1e-5
    """AdamW learning rate (ch. 5: 1e-5; the diffusers script's default is 5e-6)."""
    warmup_steps: int = 0
    """Linear warm-up steps of the constant schedule (diffusers script: constant, no warm-up)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (diffusers script and the thesis' DM optimiser: 1e-2)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (diffusers script: 1.0)."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    n_train: int | None = None
    """Pairs the ControlNet trains on: None = every training pair (thesis); n = n lesion pairs (non-empty mask)
    drawn as MedDiff-FT draws its fine-tuning pairs (`bench.diffusion.finetune.lesion_pairs`, the same train_seed):
    MedDiff-FT Table 2 trains its baselines "on the same 30 pairs" (docs/reproduce/meddiff-ft-mini.yaml: 30)."""
    sampler: str = "pndm"
    """Sampler (SD 2.1-base's default PNDM)."""
    sample_steps: int = 50
    """Sampling steps."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight (SD default 7.5)."""
    controlnet_conditioning_scale: float = 1.0
    """Multiplier of the ControlNet residuals at generation (diffusers pipeline default 1.0)."""
    generate_batch: int = 8
    """Conditions sampled together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if self.conditioning_channels not in (1, 3):
            raise ConfigError(f"method.conditioning_channels must be 1 or 3, got {self.conditioning_channels}")
        if not 0 <= self.empty_prompt_rate <= 1:
            raise ConfigError(f"method.empty_prompt_rate must be in [0, 1], got {self.empty_prompt_rate}")
        for key in ("resolution", "batch_size", "sample_steps", "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.steps < 0:
            raise ConfigError(f"method.steps must be >= 0, got {self.steps}")
        if self.n_train is not None and self.n_train < 1:
            raise ConfigError(f"method.n_train must be >= 1 or null, got {self.n_train}")


class ControlNet(GeneratorBase):
    """Mask -> image: a ControlNet trained on the task's pairs steers a frozen text-to-image backbone."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "prompt", "label"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask"}))
    Config = ControlNetConfig
    version: ClassVar[str] = "1"
    #: Options added after records were shipped: at their default they stay out of the stage keys and run ids.
    options_added_later: ClassVar[frozenset[str]] = frozenset({"n_train"})

    def __init__(self, config: ControlNetConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.controlnet: Any = None
        self.log: list[dict[str, float]] = []

    # -- model -------------------------------------------------------------------------------------
    def _ensure_backbone(self, device: Any = None) -> None:
        """Load the frozen backbone (once) and move it to ``device``."""
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone_at

            self.parts = load_backbone_at(self.config.backbone, self.config.resolution, owner="ControlNet")
            self.parts.unet.requires_grad_(False)
            self.parts.text_encoder.requires_grad_(False)
        if device is not None and torch.device(device) != self.parts.device:
            self.parts.to(device=device)

    def _ensure_model(self, device: Any = None, fresh_seed: int | None = None) -> None:
        """The backbone and a ControlNet: a fresh one (zero residuals: the bare backbone) if none was trained or
        loaded, or whenever ``fresh_seed`` is given (fit always starts from the UNet copy, seeded)."""
        self._ensure_backbone(device)
        if self.controlnet is None or fresh_seed is not None:
            from bench.diffusion.controlnet import build_controlnet

            self.controlnet = build_controlnet(self.parts.unet, self.parts.codec.factor,
                                               self.config.conditioning_channels,
                                               self.config.conditioning_embedding_channels, seed=fresh_seed or 0)
        self.controlnet.to(device=self.parts.device)

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image, resize_mask

        from bench.diffusion.controlnet import mask_condition
        from .train import train_controlnet

        c = self.config
        missing = [i for i, s in enumerate(train) if s.image is None or s.mask is None]
        if missing:
            raise FitSetError(f"controlnet trains on image-mask pairs; training sample {missing[0]} lacks "
                             f"{'an image' if train[missing[0]].image is None else 'a mask'}")
        seed = derive_seed(c.train_seed, ctx.seed)
        if c.n_train is not None:
            from bench.diffusion.finetune import lesion_pairs

            train = lesion_pairs(train, c.n_train, torch.Generator().manual_seed(seed))
            if not train:
                raise FitSetError("controlnet with method.n_train trains on lesion pairs; every training mask is empty")
        self._ensure_model(ctx.device, fresh_seed=seed)
        images = torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1),
                                           c.resolution) for s in train])
        masks = torch.stack([resize_mask(s.mask, c.resolution) for s in train])
        logger.info("controlnet fit: %d pairs, %d steps, batch %d, lr %g, %d px, backbone %s, device %s, "
                    "profile %s, seed %d", len(train), c.steps, c.batch_size, c.lr, c.resolution, self.parts.name,
                    self.parts.device, ctx.profile, seed)
        self.log = train_controlnet(self.parts, self.controlnet, images, mask_condition(masks, c.conditioning_channels),
                                    c.prompt, c, seed=seed, advance=ctx.progress("controlnet", c.steps))

    def _prompt(self, cond: Condition) -> str:
        if self.config.condition_prompt and cond.prompt:
            return cond.prompt.replace("<lesion>", "lesion").replace("<skin>", "skin")
        return self.config.prompt

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.controlnet import controlnet_residuals, mask_condition, noise_generator
        from bench.diffusion.sampling import make_scheduler, sample
        from bench.tasks.common import resize_mask

        c = self.config
        for i, cond in enumerate(conditions):
            if cond.mask is None:
                raise ValueError(f"controlnet needs a mask in every condition; condition {i} has none")
        self._ensure_model(ctx.device)
        parts = self.parts
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            prompts = [self._prompt(cond) for cond in chunk]
            masks = torch.stack([resize_mask(cond.mask, c.resolution) for cond in chunk])
            latents = torch.stack([torch.randn(shape, generator=noise_generator(ctx.seed, i)) for i in index])
            latents = latents.to(parts.device)
            sched = make_scheduler(c.sampler, parts.scheduler)
            control = mask_condition(masks, c.conditioning_channels).to(parts.device)
            hook = controlnet_residuals(self.controlnet, control, c.controlnet_conditioning_scale)
            with torch.no_grad():
                text = parts.encode_prompt(prompts).float()
                sched.set_timesteps(c.sample_steps)
                images = sample(parts.unet, text, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents * sched.init_noise_sigma, unet_kwargs_fn=hook)
            for k, cond in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1).cpu(), mask=masks[k], label=cond.label, prompt=prompts[k],
                             meta={"prompt": prompts[k], "source_id": cond.meta.get("source_id")})

    def save(self, path: Path) -> None:
        from bench.diffusion.controlnet import save_controlnet

        path.mkdir(parents=True, exist_ok=True)
        save_controlnet(self.controlnet, path / CONTROLNET_DIR)
        (path / STATE_FILE).write_text(json.dumps({"config": asdict(self.config), "log": self.log[-50:]},
                                                  default=str))

    def load(self, path: Path) -> None:
        from bench.diffusion.controlnet import load_controlnet

        controlnet = load_controlnet(path / CONTROLNET_DIR)  # before the backbone: a missing fit fails fast
        self._ensure_backbone()
        self.controlnet = controlnet.to(device=self.parts.device)
        self.log = json.loads((path / STATE_FILE).read_text()).get("log", []) if (path / STATE_FILE).is_file() else []
