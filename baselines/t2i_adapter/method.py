"""t2i-adapter: a mask-conditioned T2I-Adapter (Mou et al., AAAI 2024) trained on the task's (image, mask) pairs over a
frozen text-to-image backbone; the "T2I-Adapter" baseline of MedDiff-FT Table 2 (trained on the same 30 pairs as
MedDiff-FT, settings unpublished: spec A.9 [U]).

diffusers' `T2IAdapter` computes one feature map per UNet down level from the conditioning image; the UNet adds them
to its encoder states (``down_intrablock_additional_residuals``). The recipe is diffusers'
``examples/t2i_adapter`` one: UNet, text encoder and VAE frozen, only the adapter trained with AdamW on the epsilon
MSE, the mask as a 3-channel image in [0, 1], every pair captioned with ``prompt``; sampling adds the adapter features
on both classifier-free-guidance branches (as diffusers' adapter pipelines do) with ``adapter_conditioning_scale``.
The adapter's layout must match the backbone's down blocks: SD-1.5 = ``full_adapter`` (channels 320-640-1280-1280,
pixel-unshuffle 8, the released T2I-Adapters); mini-sd (blocks 32-64-128, first block without attention) =
``full_adapter_xl`` with unshuffle 2 (features at 16-16-8 px), checked against the UNet before training.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.diffusion.finetune import lesion_pairs
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
STATE_FILE = "t2i_adapter.json"


@dataclass(frozen=True)
class T2IAdapterConfig:
    """T2I-Adapter baseline options (paper profile defaults; MedDiff-FT leaves them unpublished)."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers SD folder (paper: SD-1.5)."""
    resolution: int = 512
    """Training / generation side (SD-1.5: 512; mini-sd: 32)."""
    adapter_type: Literal["full_adapter", "full_adapter_xl", "light_adapter"] = "full_adapter"
    """diffusers adapter layout (SD-1.5: full_adapter; mini-sd: full_adapter_xl)."""
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    """Adapter widths, one per UNet down level (SD-1.5: 320, 640, 1280, 1280)."""
    num_res_blocks: int = 2
    """Residual blocks per level (released adapters: 2)."""
    downscale_factor: int = 8
    """Pixel-unshuffle factor (SD-1.5: 8, the VAE's)."""
    n_train: int | None = 30
    """Pairs with a non-empty mask the adapter trains on (Table 2: the same 30 as MedDiff-FT); None: all."""
    prompt: str = "a photo of hta"
    """Caption of every training pair and generation prompt (MedDiff-FT's trigger [U])."""
    steps: int = 500
    """Training steps (MedDiff-FT's fine-tuning budget [U])."""
    batch_size: int = 2
    """Training batch (MedDiff-FT's effective batch 2 [U])."""
    lr: float = 1e-5
    """AdamW learning rate (diffusers' T2I-Adapter example: 1e-5)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (diffusers example)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (diffusers example)."""
    timestep_sampling: Literal["uniform", "cubic"] = "uniform"
    """Training timesteps: uniform (T2I-Adapter paper, SD-1.5) or cubic toward large t (diffusers' SDXL example)."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    sampler: str = "pndm"
    """Sampler (SD-1.5's PNDM)."""
    sample_steps: int = 50
    """Sampling steps."""
    guidance_scale: float = 7.5
    """Classifier-free guidance."""
    adapter_conditioning_scale: float = 1.0
    """Multiplier of the adapter features (diffusers default 1)."""
    generate_batch: int = 8
    """Conditions sampled together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        for key in ("resolution", "num_res_blocks", "downscale_factor", "batch_size", "sample_steps", "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_train is not None and self.n_train < 1:
            raise ConfigError(f"method.n_train must be >= 1 or null, got {self.n_train}")
        if self.steps < 0:
            raise ConfigError(f"method.steps must be >= 0, got {self.steps}")


def build_adapter(config: T2IAdapterConfig, seed: int) -> Any:
    from diffusers import T2IAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T2IAdapter(in_channels=3, channels=list(config.channels), num_res_blocks=config.num_res_blocks,
                          downscale_factor=config.downscale_factor, adapter_type=config.adapter_type)


def check_layout(adapter: Any, unet: Any, resolution: int, factor: int) -> None:
    """One UNet call with the adapter's features at ``resolution``; a layout mismatch is one clear error."""
    x = torch.zeros(1, int(unet.config.in_channels), resolution // factor, resolution // factor, device=unet.device)
    context = torch.zeros(1, 77, int(unet.config.cross_attention_dim), device=unet.device)
    with torch.no_grad():
        feats = adapter(torch.zeros(1, 3, resolution, resolution, device=unet.device))
        try:
            unet(x, 1, encoder_hidden_states=context, down_intrablock_additional_residuals=list(feats))
        except (RuntimeError, IndexError) as exc:
            raise ValueError(f"t2i-adapter: adapter features {[tuple(f.shape[1:]) for f in feats]} do not fit the "
                             f"backbone UNet's down blocks (set method.adapter_type / channels / downscale_factor; "
                             f"mini-sd: full_adapter_xl, [32, 64, 128], 2): {str(exc).splitlines()[0]}") from None


def adapter_residuals(adapter: Any, image: torch.Tensor, scale: float = 1.0) -> Any:
    """A `bench.diffusion.sampling.UnetKwargsFn` adding the adapter's features (repeated to the CFG batch)."""
    with torch.no_grad():
        feats = [f * scale for f in adapter(image)]

    def unet_kwargs(x: torch.Tensor, t: Any, context: torch.Tensor) -> dict[str, Any]:
        reps = x.shape[0] // image.shape[0]
        return {"down_intrablock_additional_residuals": [f.repeat(reps, 1, 1, 1).to(x) for f in feats]}

    return unet_kwargs


class T2IAdapterBaseline(GeneratorBase):
    """Mask -> image through a T2I-Adapter trained on the task's pairs; the sample's mask is the condition's."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask", "label", "prompt", "reference"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask"}))
    Config = T2IAdapterConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"sampler", "sample_steps", "guidance_scale",
                                                           "adapter_conditioning_scale", "generate_batch"})

    def __init__(self, config: T2IAdapterConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.adapter: Any = None
        self.state: dict[str, Any] = {}

    def _ensure_backbone(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone_at

            self.parts = load_backbone_at(self.config.backbone, self.config.resolution, owner="T2I-Adapter")
            self.parts.unet.requires_grad_(False)
            self.parts.text_encoder.requires_grad_(False)

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.diffusion.controlnet import mask_condition
        from bench.tasks.common import resize_image, resize_mask

        c = self.config
        pairs = [s for s in train if s.image is not None and s.mask is not None and bool(s.mask.any())]
        if not pairs:
            raise ValueError("t2i-adapter trains on image-mask pairs with a non-empty mask; the training set has none")
        self._ensure_backbone()
        seed = derive_seed(c.train_seed, ctx.seed)
        g = torch.Generator().manual_seed(seed)
        if c.n_train is not None:
            pairs = lesion_pairs(pairs, c.n_train, g)
        images = torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1),
                                           c.resolution) for s in pairs])
        cond = mask_condition(torch.stack([resize_mask(s.mask, c.resolution) for s in pairs]), 3)
        self.adapter = build_adapter(c, derive_seed(seed, 1)).to(self.parts.device)
        check_layout(self.adapter, self.parts.unet, c.resolution, self.parts.codec.factor)
        parts, unet, codec, sched = self.parts, self.parts.unet, self.parts.codec, self.parts.scheduler
        self.adapter.train().requires_grad_(True)
        opt = torch.optim.AdamW(self.adapter.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        with torch.no_grad():
            text = parts.encode_prompt([c.prompt]).float()
        n_t = int(sched.config.num_train_timesteps)
        advance = ctx.progress("t2i-adapter", c.steps)
        log = []
        for step in range(c.steps):
            idx = torch.randint(0, len(images), (c.batch_size,), generator=g)
            with torch.no_grad():
                x0 = codec.encode(images[idx].to(parts.device)).float()
            noise = torch.randn(x0.shape, generator=g).to(x0)
            if c.timestep_sampling == "cubic":
                u = torch.rand(len(idx), generator=g)
                t = ((1 - u ** 3) * n_t).long().clamp(0, n_t - 1)
            else:
                t = torch.randint(0, n_t, (len(idx),), generator=g)
            t = t.to(parts.device)
            feats = self.adapter(cond[idx].to(parts.device))
            pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=text.expand(len(idx), -1, -1),
                        down_intrablock_additional_residuals=list(feats)).sample
            loss = F.mse_loss(pred.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.adapter.parameters(), c.grad_clip)
            opt.step()
            log.append({"step": step, "loss": float(loss.detach())})
            advance()
        self.adapter.eval().requires_grad_(False)
        self.state = {"train_ids": [s.meta.get("id") for s in pairs], "log": log[-20:]}

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.controlnet import mask_condition, noise_generator
        from bench.diffusion.sampling import make_scheduler, sample
        from bench.tasks.common import resize_mask

        c = self.config
        if self.adapter is None:
            raise RuntimeError("t2i-adapter: generate() before fit() or load()")
        for i, cond in enumerate(conditions):
            if cond.mask is None:
                raise ValueError(f"t2i-adapter needs a mask in every condition; condition {i} has none")
        self._ensure_backbone()
        parts = self.parts
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
            text = parts.encode_prompt([c.prompt]).float()
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            masks = torch.stack([resize_mask(cond.mask, c.resolution) for cond in chunk])
            latents = torch.stack([torch.randn(shape, generator=noise_generator(ctx.seed, i)) for i in index])
            sched = make_scheduler(c.sampler, parts.scheduler)
            hook = adapter_residuals(self.adapter, mask_condition(masks, 3).to(parts.device),
                                     c.adapter_conditioning_scale)
            with torch.no_grad():
                sched.set_timesteps(c.sample_steps)
                images = sample(parts.unet, text.expand(len(chunk), -1, -1), sched, parts.codec,
                                steps=c.sample_steps, guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents.to(parts.device) * sched.init_noise_sigma, unet_kwargs_fn=hook)
            for k, cond in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1).cpu(), mask=masks[k], label=cond.label, prompt=c.prompt,
                             meta={"source_id": cond.meta.get("source_id")})

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.adapter.save_pretrained(str(path / ADAPTER_DIR), safe_serialization=True)
        (path / STATE_FILE).write_text(json.dumps({"config": asdict(self.config), **self.state}, default=str))

    def load(self, path: Path) -> None:
        from diffusers import T2IAdapter

        if not (path / ADAPTER_DIR / "config.json").is_file():
            raise FileNotFoundError(f"no trained T2I-Adapter in {path / ADAPTER_DIR} (expected save_pretrained output)")
        adapter = T2IAdapter.from_pretrained(str(path / ADAPTER_DIR)).eval().requires_grad_(False)
        self._ensure_backbone()
        self.adapter = adapter.to(self.parts.device)
        state = json.loads((path / STATE_FILE).read_text()) if (path / STATE_FILE).is_file() else {}
        state.pop("config", None)
        self.state = state
