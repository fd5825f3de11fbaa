"""ip-adapter: an image-prompt adapter with decoupled cross-attention (Ye et al. 2023) trained on the task's data;
the IP-Adapter baseline of thesis chapter 5 (Tables 5.2-5.4).

fit: the frozen image encoder embeds every training image; the image projection (``num_tokens`` context tokens)
and the ``to_k_ip``/``to_v_ip`` of every cross-attention layer learn to reconstruct the image from its own
embedding and the fixed prompt ``"An image of lesion on skin."`` (`baselines.ip_adapter.train`). UNet, text
encoder and image encoder stay frozen. generate: one image per condition from its ``reference`` image, with
classifier-free guidance whose unconditional branch has a zero image embedding and the empty prompt (as the
original).

How the condition mask enters is ``mask_input`` (thesis ch. 5: the IP-Adapter "learns from both mask and image
inputs"; spec open question 7): ``controlnet`` (default) trains a mask ControlNet initialised from the UNet jointly
with the adapter and adds its residuals on both guidance branches at generation; ``embed`` feeds the image-prompt
branch the reference embedding concatenated with an embedding of the mask (`IPAdapter.embed_references`);
``none`` is the plain adapter, the mask only passed through. With a mask input every condition and training sample
needs a mask, and each generated sample carries its conditioning mask.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ip_adapter.safetensors"
STATE_FILE = "ip_adapter.json"
#: Folder of the jointly trained ControlNet in the fit state (diffusers ``save_pretrained`` layout, safetensors).
CONTROLNET_DIR = "controlnet"

_ACCEPTS = frozenset({"reference", "prompt", "label", "mask"})
#: ``mask_input=none``: the plain image-prompt adapter (the mask, when given, is only passed through).
PLAIN_CAPABILITIES = Capabilities(accepts=_ACCEPTS, returns=frozenset({"image", "mask"}),
                                  requires=frozenset({"reference"}))
#: ``mask_input=controlnet`` / ``embed``: reference and mask in, (image, conditioning mask) out.
MASK_CAPABILITIES = Capabilities(accepts=_ACCEPTS, returns=frozenset({"image", "mask"}),
                                 requires=frozenset({"reference", "mask"}))


@dataclass(frozen=True)
class IPAdapterConfig:
    """IP-Adapter options; defaults are the paper profile's values except the two model sources (mini ones)."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (paper: stable-diffusion-2-1-base)."""
    image_encoder: str = "mini-clip"
    """``mini-clip`` (its image tower) or a local CLIPVisionModelWithProjection folder (paper: OpenCLIP ViT-H/14,
    the encoder the original pairs with SD 2.x)."""
    resolution: int = 512
    """Training/generation side in pixels (paper: 512; mini-sd: 32)."""
    num_tokens: int = 4
    """Image context tokens of the projection (original IP-Adapter: 4)."""
    init_from_text: bool = True
    """Initialise to_k_ip/to_v_ip from the layer's to_k/to_v (original)."""
    prompt: str = "An image of lesion on skin."
    """Text prompt of training and generation (thesis ch. 5 leaves it unstated; the spec's [A] choice)."""
    prompt_source: Literal["fixed", "condition"] = "fixed"
    """Generation prompt: ``prompt`` always, or the condition's prompt when it has one (placeholders made plain)."""
    steps: int = 20000
    """Training steps (unstated in the thesis; [A] the thesis's SD fine-tuning budget)."""
    batch_size: int = 8
    """Training batch size (original tutorial_train.py: 8)."""
    lr: float = 1e-4
    """AdamW learning rate (IP-Adapter paper: 1e-4)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (IP-Adapter paper: 1e-2)."""
    image_drop_rate: float = 0.05
    """Probability of dropping only the image embedding (IP-Adapter paper: 0.05)."""
    text_drop_rate: float = 0.05
    """Probability of dropping only the text (IP-Adapter paper: 0.05)."""
    both_drop_rate: float = 0.05
    """Probability of dropping both (IP-Adapter paper: 0.05)."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    sampler: str = "pndm"
    """Sampler (SD 2.1-base's default PNDM, as the other SD baselines here)."""
    sample_steps: int = 50
    """Sampling steps."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight."""
    scale: float = 1.0
    """Weight of the image attention at generation (IP-Adapter's ``scale``; 0 ignores the reference)."""
    generate_batch: int = 8
    """Images generated together."""
    mask_input: Literal["controlnet", "embed", "none"] = "controlnet"
    """How the condition mask enters (thesis ch. 5: "learns from both mask and image inputs"; how is not said, spec
    [A]): ``controlnet`` = a mask ControlNet initialised from the UNet, trained jointly with the adapter (the spec's
    first reading); ``embed`` = the image prompt is the reference embedding concatenated with an embedding of the
    mask (`mask_embedding`); ``none`` = plain IP-Adapter, the mask is passed through unused."""
    mask_embedding: Literal["mask", "masked-reference"] = "mask"
    """``mask_input=embed``: what the frozen image encoder embeds beside the reference: ``mask`` = the mask as a
    white-on-black RGB image, ``masked-reference`` = the reference with everything outside the mask black."""
    controlnet_lr: float = 1e-5
    """``mask_input=controlnet``: AdamW learning rate of the ControlNet (thesis DM lr 1e-5, as the controlnet
    baseline; AquaLoRA's ``train_controlnet_ipadapter.py`` defaults: ControlNet 1e-5, adapter 1e-4)."""
    controlnet_grad_clip: float = 1.0
    """``mask_input=controlnet``: gradient-norm clip of the ControlNet's parameters (diffusers'
    ``train_controlnet.py``: 1.0); the adapter stays unclipped, as the original IP-Adapter."""
    conditioning_channels: int = 3
    """``mask_input=controlnet``: channels of the ControlNet's conditioning image (3 = the mask repeated as an RGB
    image in [0, 1], as the controlnet baseline; 1 = the bare mask)."""
    controlnet_conditioning_scale: float = 1.0
    """``mask_input=controlnet``: multiplier of the ControlNet residuals at generation (diffusers default 1.0)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        rates = {"image_drop_rate": self.image_drop_rate, "text_drop_rate": self.text_drop_rate,
                 "both_drop_rate": self.both_drop_rate}
        for key, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"method.{key} must be a probability in [0, 1], got {value}")
        if sum(rates.values()) > 1.0:
            raise ConfigError(f"method.image_drop_rate + text_drop_rate + both_drop_rate must be <= 1, got "
                              f"{sum(rates.values())}")
        if self.num_tokens < 1:
            raise ConfigError(f"method.num_tokens must be >= 1, got {self.num_tokens}")
        if self.generate_batch < 1 or self.batch_size < 1:
            raise ConfigError("method.generate_batch and method.batch_size must be >= 1")
        if self.conditioning_channels not in (1, 3):
            raise ConfigError(f"method.conditioning_channels must be 1 or 3, got {self.conditioning_channels}")


class IPAdapter(GeneratorBase):
    """(Reference image, mask) -> image through a trained IP-Adapter (+ mask ControlNet) on a frozen backbone."""

    capabilities: ClassVar[Capabilities] = MASK_CAPABILITIES  # the default mask_input=controlnet
    Config = IPAdapterConfig
    version: ClassVar[str] = "2"

    def __init__(self, config: IPAdapterConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.encoder: Any = None
        self.controlnet: Any = None
        self.log: list[dict[str, float]] = []

    @classmethod
    def capabilities_for(cls, config: IPAdapterConfig) -> Capabilities:
        return PLAIN_CAPABILITIES if config.mask_input == "none" else MASK_CAPABILITIES

    # -- model -------------------------------------------------------------------------------------
    def _ensure_model(self, device: Any = None) -> None:
        """Load backbone and image encoder and install an untrained adapter (once); move them to ``device``."""
        if self.parts is None:
            self._load_model()
        if device is not None and torch.device(device) != self.parts.device:
            self.parts.to(device=device)
            self.encoder.to(device)
            if self.controlnet is not None:
                self.controlnet.to(device=device)

    def _load_model(self) -> None:
        from bench.diffusion.dermprompt import check_resolution, load_backbone

        from .adapter import install_ip_adapter
        from .encoders import load_image_encoder

        c = self.config
        encoder = load_image_encoder(c.image_encoder)
        parts = load_backbone(c.backbone, owner="IP-Adapter")
        parts.text_encoder.requires_grad_(False)
        parts.unet.requires_grad_(False)
        self.parts, self.encoder = parts, encoder
        if c.mask_input == "controlnet":  # copied from the plain UNet (before the adapter's layers exist)
            from bench.diffusion.controlnet import build_controlnet

            check_resolution(parts, c.resolution)
            self.controlnet = build_controlnet(parts.unet, parts.codec.factor, c.conditioning_channels,
                                               seed=derive_seed(c.train_seed, 2)).eval().requires_grad_(False)
        install_ip_adapter(parts.unet, self.embed_dim(), num_tokens=c.num_tokens, scale=c.scale,
                           init_from_text=c.init_from_text, seed=derive_seed(c.train_seed, 1))

    def embed_dim(self) -> int:
        """Width D of `embed_references`' output (the projection's input): the image encoder's embedding width,
        twice that with ``mask_input=embed``."""
        return int(self.encoder.embed_dim) * (2 if self.config.mask_input == "embed" else 1)

    def embed_references(self, images: torch.Tensor, masks: torch.Tensor | None, batch: int = 64) -> torch.Tensor:
        """Image-prompt embeddings (N, D) of reference ``images`` (N, 3, H, W) in [0, 1] with their ``masks``
        (N, H, W) bool or None, without gradients; used in training and generation alike.

        Plain IP-Adapter (``mask_input`` ``none`` or ``controlnet``) embeds the images with the frozen encoder and
        ignores the masks here. ``mask_input=embed`` concatenates ``[encoder(image), encoder(m)]`` with ``m`` the
        mask as a white-on-black RGB image (``mask_embedding=mask``) or the image with its outside blacked out
        (``masked-reference``). A subclass overriding this (and `embed_dim` if the width changes) may define
        another mask-aware image prompt.
        """
        def encode(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([self.encoder(x[i:i + batch]) for i in range(0, len(x), batch)])

        if self.config.mask_input != "embed":
            return encode(images)
        if masks is None:
            raise ValueError("IP-Adapter with mask_input=embed needs a mask with every reference image")
        from bench.diffusion.controlnet import mask_condition

        shown = (mask_condition(masks, 3) if self.config.mask_embedding == "mask"
                 else images * masks[:, None].to(images.dtype))
        return torch.cat([encode(images), encode(shown)], dim=1)

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image, resize_mask

        from .train import train_adapter

        self._ensure_model(ctx.device)
        c = self.config
        if not train or any(s.image is None for s in train):
            raise ValueError("IP-Adapter trains on images: every training sample needs an image")
        no_mask = [i for i, s in enumerate(train) if s.mask is None]
        if c.mask_input != "none" and no_mask:
            raise ValueError(f"IP-Adapter with mask_input={c.mask_input} trains on image-mask pairs; training sample "
                             f"{no_mask[0]} has no mask (use method.mask_input=none for the plain adapter)")
        rgb = [s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1) for s in train]
        images = torch.stack([resize_image(im, c.resolution) for im in rgb])
        masks = (torch.stack([resize_mask(s.mask, c.resolution) for s in train])
                 if all(s.mask is not None for s in train) else None)
        embeds = self.embed_references(images, masks)
        seed = derive_seed(c.train_seed, ctx.seed)
        logger.info("ip-adapter fit: %d images, %d px, backbone %s, image encoder %s, mask input %s, profile %s, "
                    "seed %d", len(train), c.resolution, self.parts.name, self.encoder.name, c.mask_input,
                    ctx.profile, seed)
        control = None
        if self.controlnet is not None:
            from bench.diffusion.controlnet import mask_condition

            control = mask_condition(masks, c.conditioning_channels)
        self.log = train_adapter(self.parts, embeds, images, c, seed=seed,
                                 advance=ctx.progress("IP-Adapter training", c.steps), controlnet=self.controlnet,
                                 conditions=control)

    def _prompt(self, cond: Condition) -> str:
        if self.config.prompt_source == "condition" and cond.prompt:
            return cond.prompt.replace("<lesion>", "lesion").replace("<skin>", "skin")
        return self.config.prompt

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample
        from bench.tasks.common import resize_image, resize_mask

        from .adapter import set_ip_scale

        self._ensure_model(ctx.device)
        c = self.config
        parts = self.parts
        missing = [i for i, cond in enumerate(conditions) if cond.reference is None]
        if missing:
            raise ValueError(f"IP-Adapter needs a reference image in every condition; condition {missing[0]} has none")
        no_mask = [i for i, cond in enumerate(conditions) if cond.mask is None]
        if c.mask_input != "none" and no_mask:
            raise ValueError(f"IP-Adapter with mask_input={c.mask_input} needs a mask in every condition; condition "
                             f"{no_mask[0]} has none (use method.mask_input=none for the plain adapter)")
        set_ip_scale(parts.unet, c.scale)
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            prompts = [self._prompt(cond) for cond in chunk]
            refs = torch.stack([resize_image(cond.reference if cond.reference.shape[0] == 3
                                             else cond.reference.expand(3, -1, -1), c.resolution) for cond in chunk])
            ref_masks = (torch.stack([resize_mask(cond.mask, c.resolution) for cond in chunk])
                         if all(cond.mask is not None for cond in chunk) else None)
            embeds = self.embed_references(refs, ref_masks).to(parts.device)
            if c.guidance_scale != 1.0:  # the batch is [uncond, cond]: zero image embedding with the empty prompt
                embeds = torch.cat([torch.zeros_like(embeds), embeds])
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(derive_seed(ctx.seed, 17, i)))
                                   for i in index])
            sched = make_scheduler(c.sampler, parts.scheduler)
            hook = None
            if self.controlnet is not None:  # residuals on both guidance branches, as baselines/controlnet
                from bench.diffusion.controlnet import controlnet_residuals, mask_condition

                hook = controlnet_residuals(self.controlnet, mask_condition(ref_masks, c.conditioning_channels)
                                            .to(parts.device), c.controlnet_conditioning_scale)
            with torch.no_grad():
                text = parts.encode_prompt(prompts).float()
                sched.set_timesteps(c.sample_steps)
                images = sample(parts.unet, text, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=(latents * sched.init_noise_sigma).to(parts.device),
                                unet_kwargs={"added_cond_kwargs": {"image_embeds": [embeds[:, None]]}},
                                unet_kwargs_fn=hook)
            for k, cond in enumerate(chunk):
                image = images[k].clamp(0, 1).cpu()
                mask = resize_mask(cond.mask, image.shape[-1]) if cond.mask is not None else None
                yield Sample(image=image, mask=mask, label=cond.label, prompt=prompts[k],
                             meta={"source_id": cond.meta.get("source_id"), "prompt": prompts[k]})

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        from .adapter import adapter_state_dict

        path.mkdir(parents=True, exist_ok=True)
        c = self.config
        metadata = {"image_encoder": c.image_encoder, "backbone": c.backbone, "num_tokens": str(c.num_tokens)}
        if c.mask_input != "none":  # the plain adapter's file stays as before
            metadata["mask_input"] = c.mask_input
        save_file(adapter_state_dict(self.parts.unet), str(path / WEIGHTS_FILE), metadata=metadata)
        if self.controlnet is not None:
            from bench.diffusion.controlnet import save_controlnet

            save_controlnet(self.controlnet, path / CONTROLNET_DIR)
        (path / STATE_FILE).write_text(json.dumps({"config": asdict(self.config), "log": self.log[-50:]}, default=str))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        from .adapter import load_adapter_state

        self._ensure_model()
        load_adapter_state(self.parts.unet, load_file(str(path / WEIGHTS_FILE)))
        if self.controlnet is not None:
            from bench.diffusion.controlnet import load_controlnet

            self.controlnet = load_controlnet(path / CONTROLNET_DIR, self.parts.device)
        self.log = json.loads((path / STATE_FILE).read_text()).get("log", [])
