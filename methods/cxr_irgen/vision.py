"""CXR-IRGen's vision module (thesis section 6.3.1, spec research/ch6_cxr.md section 2).

* `label_to_prompt`, `binary_labels`: label vector -> semi-structured prompt; they live in
  `bench.diffusion.cxr_prompts` (shared with the vanilla-ldm baseline) and are re-exported here.
* `ReferenceBank`: the reference image of a label vector: the first training image whose label vector is the same;
  when none is, the thesis' fallback (the closest label: fewest differing entries, then the first) or the code's
  (a zero embedding).
* `condition`: the hybrid prompt. U-Net: the CLIP text tokens with the reference image's pooled CLIP vision vector
  appended as one more token (no projection); U-ViT: ``(text_pooled + image) / 2`` (its projection is in the
  backbone). Without RIE the image part is left out.
* `train_denoiser`: epsilon-MSE fine-tuning under that condition (AdamW, no condition dropout, as the code).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.diffusion.cxr_prompts import binary_labels, label_to_prompt  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)


class ReferenceBank:
    """Reference images by label vector (training pool order; first match wins).

    Args:
        keys: (N, 14) binarised label vectors of the pool.
        images: (N, C, H, W) pool images in [0, 1].
        fallback: ``closest`` (thesis: the same or closest label) or ``zeros`` (code: a zero embedding).
    """

    def __init__(self, keys: torch.Tensor, images: torch.Tensor, fallback: str = "closest") -> None:
        if fallback not in ("closest", "zeros"):
            raise ValueError(f"reference fallback must be 'closest' or 'zeros', got {fallback!r}")
        self.keys = (keys >= 0.5).to(torch.int8)
        self.images = images
        self.fallback = fallback
        self.first: dict[bytes, int] = {}
        for i, k in enumerate(self.keys.numpy()):
            self.first.setdefault(k.tobytes(), i)

    def lookup(self, labels: torch.Tensor) -> int | None:
        """Pool index of the reference of ``labels`` (None: zero embedding)."""
        key = (labels >= 0.5).to(torch.int8)
        hit = self.first.get(key.numpy().tobytes())
        if hit is not None or self.fallback == "zeros":
            return hit
        dist = (self.keys != key[None]).sum(1)
        return int(torch.argmin(dist))  # argmin returns the first minimum: pool order breaks ties


class ClipEncoders:
    """The frozen CLIP text tower (of the diffusion model) and the CLIP vision tower of the reference image."""

    def __init__(self, tokenizer: Any, text_encoder: Any, vision_model: Any, vision_size: int) -> None:
        self.tokenizer, self.text_encoder, self.vision_model, self.vision_size = tokenizer, text_encoder, vision_model, vision_size

    @property
    def image_dim(self) -> int:
        return int(self.vision_model.config.hidden_size)

    def text(self, prompts: Sequence[str], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (B, L, D), pooled (B, D)); dynamic padding to the longest prompt (code) or ``pad_to``."""
        kw = dict(padding="max_length", max_length=pad_to) if pad_to else dict(padding="longest")
        tok = self.tokenizer(list(prompts), truncation=True, return_tensors="pt", **kw)
        with torch.no_grad():
            out = self.text_encoder(input_ids=tok.input_ids.to(self.text_encoder.device))
        return out.last_hidden_state.float(), out.pooler_output.float()

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled vision vectors (B, D) (``pooler_output``, before any projection) of [0, 1] images; the reference
        preprocessing: RGB, bilinear resize to the tower's size, ``Normalize(0.5, 0.5)`` (not CLIP's mean/std)."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.vision_size, self.vision_size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            return self.vision_model(pixel_values=(x * 2 - 1).to(self.vision_model.device)).pooler_output.float()


def condition(encoders: ClipEncoders, prompts: Sequence[str], ref_vectors: torch.Tensor | None, backbone: str,
              pad_to: int | None = None) -> torch.Tensor:
    """The diffusion condition: U-Net (B, L[+1], D); U-ViT (B, 1, D) before its projection. ``ref_vectors``
    (B, D) or None (without RIE)."""
    hidden, pooled = encoders.text(prompts, pad_to)
    if backbone == "unet":
        if ref_vectors is None:
            return hidden
        if ref_vectors.shape[-1] != hidden.shape[-1]:
            raise ValueError(f"RIE concatenation needs the image vector width ({ref_vectors.shape[-1]}) to equal the "
                             f"text token width ({hidden.shape[-1]})")
        return torch.cat([hidden, ref_vectors[:, None].to(hidden)], dim=1)
    if ref_vectors is None:
        return pooled[:, None]
    return ((pooled + ref_vectors.to(pooled)) / 2)[:, None]


def unconditional(encoders: ClipEncoders, cond: torch.Tensor, backbone: str) -> torch.Tensor:
    """The CFG branch: the empty prompt padded to the condition's length (U-Net, no image token, as diffusers does
    with ``prompt_embeds``) or its pooled vector (U-ViT)."""
    if backbone == "unet":
        return encoders.text([""], pad_to=cond.shape[1])[0]
    return encoders.text([""])[1][:, None]


def with_condition_dropout(conds: Callable[[torch.Tensor], torch.Tensor], encoders: ClipEncoders, backbone: str,
                           p: float, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``conds`` with each item's condition replaced, with probability ``p``, by the CFG branch's (`unconditional`),
    so that branch is trained too (Stable Diffusion's recipe; the reference code never drops, p = 0). The draws
    come from a generator of their own: with p = 0 nothing is drawn and ``conds`` is returned as it is."""
    if p <= 0:
        return conds
    gen = torch.Generator().manual_seed(seed)

    def dropped(idx: torch.Tensor) -> torch.Tensor:
        cond = conds(idx)
        drop = torch.rand(len(idx), generator=gen) < p
        if drop.any():
            cond = cond.clone()
            cond[drop] = unconditional(encoders, cond, backbone).to(cond)
        return cond

    return dropped


def train_denoiser(model: Any, scheduler: Any, codec: Any, images: torch.Tensor, conds: Callable[[torch.Tensor], torch.Tensor],
                   steps: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                   advance: Callable[..., None] | None = None, extra_params: Sequence[Any] = ()) -> list[float]:
    """Epsilon-prediction fine-tuning (code: AdamW betas (0.9, 0.999), eps 1e-8, no scheduler, no warm-up, no
    condition dropout, uniform timesteps). ``conds(idx)`` gives the condition of the batch items ``idx``."""
    from .language import optimizer_step

    model.train().requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n_train = int(scheduler.config.num_train_timesteps)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        with torch.no_grad():
            x0 = codec.encode(images[idx])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_train, (batch_size,), generator=gen)
        cond = conds(idx)
        eps = model(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        losses.append(optimizer_step(opt, F.mse_loss(eps.float(), noise, reduction="mean"), advance))
    model.eval().requires_grad_(False)
    return losses


def images_at(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, 3, size, size): RGB, bilinear squash (the reference's Resize((s, s)) + CenterCrop(s))."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x


def labels_matrix(samples: Sequence[Any]) -> np.ndarray:
    return np.stack([s.labels.numpy() for s in samples])
