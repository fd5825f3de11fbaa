"""Frozen image encoders of the IP-Adapter's image prompt.

``paper``: a local folder holding a `transformers.CLIPVisionModelWithProjection` (for Stable Diffusion 2.1 the
original uses OpenCLIP ViT-H/14, shipped in that format as ``image_encoder/`` of the ``h94/IP-Adapter`` repository);
the prompt embedding is its projected ``image_embeds`` (N, projection_dim), the preprocessing its
`CLIPImageProcessor` (resize shortest side, centre crop, CLIP normalisation), as the original ``tutorial_train.py``.
``mini``: mini-clip's image tower (`bench.foundation.mini_clip.MiniClip.image_embeddings`, unnormalised, like
``image_embeds``).

Every encoder maps images (N, 1|3, H, W) float in [0, 1] to embeddings (N, D) and exposes ``embed_dim`` = D.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

MINI_CLIP = "mini-clip"


class ImageEncoder(Protocol):
    """A frozen image encoder: ``encoder(images (N, 1|3, H, W) in [0, 1]) -> (N, embed_dim)``."""

    name: str
    embed_dim: int

    def __call__(self, images: Any) -> Any: ...

    def to(self, device: Any) -> Any: ...


def _as_rgb(images: Any) -> Any:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image encoder expects images (N, 1|3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class ClipVisionEncoder:
    """`CLIPVisionModelWithProjection` + `CLIPImageProcessor` from a local folder (nothing is downloaded).

    Args:
        folder: a ``save_pretrained`` folder of `CLIPVisionModelWithProjection` (``config.json`` + weights); its
            ``preprocessor_config.json`` is used when present, else CLIP's default processor at the model's input
            size.
        device: where the model runs.

    Raises:
        FileNotFoundError: the folder or its ``config.json`` is missing (one line saying what to put there).
    """

    def __init__(self, folder: str | Path, device: Any = "cpu") -> None:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"IP-Adapter image encoder folder not found: {path} (put a CLIPVisionModelWithProjection folder there, "
                "e.g. image_encoder/ of h94/IP-Adapter (OpenCLIP ViT-H/14) saved with save_pretrained, or use "
                "method.image_encoder=mini-clip)")
        self.model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True)
        self.model.eval().requires_grad_(False).to(device)
        size = int(self.model.config.image_size)
        if (path / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
        else:
            self.processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.name = str(path)
        self.embed_dim = int(self.model.config.projection_dim)

    def to(self, device: Any) -> ClipVisionEncoder:
        self.model.to(device)
        return self

    def __call__(self, images: Any) -> Any:
        import torch

        rgb = (_as_rgb(images).detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        arrays = [img.permute(1, 2, 0).cpu().numpy() for img in rgb]  # what the processor takes from a decoded file
        pixels = self.processor(images=arrays, return_tensors="pt").pixel_values.to(self.model.device, self.model.dtype)
        return self.model(pixel_values=pixels).image_embeds.float()


class MiniClipEncoder:
    """mini-clip's image tower: unnormalised projected embeddings (N, projection_dim)."""

    def __init__(self, device: Any = "cpu") -> None:
        from bench.diffusion.models import load_mini_clip

        self.clip = load_mini_clip(device=str(device))
        self.name = MINI_CLIP
        self.embed_dim = int(self.clip.model.config.projection_dim)

    def to(self, device: Any) -> MiniClipEncoder:
        self.clip.model.to(device)
        return self

    def __call__(self, images: Any) -> Any:
        return self.clip.image_embeddings(_as_rgb(images), normalize=False).float()


def load_image_encoder(name: str, device: Any = "cpu") -> ImageEncoder:
    """``mini-clip`` or a local `CLIPVisionModelWithProjection` folder."""
    if name == MINI_CLIP:
        return MiniClipEncoder(device)
    return ClipVisionEncoder(name, device)
