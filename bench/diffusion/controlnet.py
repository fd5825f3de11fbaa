"""ControlNet pieces shared by the mask-conditioned generators (thesis ch. 4 ControlNet, ch. 5 ControlNet,
IP-Adapter + ControlNet, ControlNet + StyleID, T2I-Adapter's mask condition, DiffBoost's edge ControlNet): building
the ControlNet from a backbone UNet, turning masks into its conditioning image, the per-step residual hook of
`bench.diffusion.sampling.sample`, saving and loading; and `noise_generator`, the per-condition noise they share.
Moved from ``baselines/controlnet/model.py`` (issue 22 "Structure": methods and baselines import only ``bench/``).

A diffusers `ControlNetModel` (Zhang et al., ICCV 2023) copies the UNet's encoder and middle block and adds zero
convolutions, so an untrained ControlNet leaves the UNet's output exactly unchanged. Its conditioning embedding
downsamples the pixel-space condition by ``2 ** (len(channels) - 1)`` to the model space; the channels are therefore
derived from the codec's factor (SD's VAE: 8 -> diffusers' default ``(16, 32, 96, 256)``; pixel-space mini-sd:
1 -> ``(16,)``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: diffusers' default conditioning-embedding widths (SD: 512 px condition -> 64 px latents, three stride-2 convs).
DEFAULT_EMBEDDING_CHANNELS = (16, 32, 96, 256)


def embedding_channels_for(factor: int, channels: Sequence[int] | None = None) -> tuple[int, ...]:
    """Conditioning-embedding widths whose stride-2 convolutions bring a pixel-space condition to the model space.

    Args:
        factor: the codec's spatial downsampling (1, 2, 4, 8, ...; a power of two).
        channels: explicit widths (checked against ``factor``); None: the first ``log2(factor) + 1`` of diffusers'
            defaults, widened by doubling when a factor beyond 8 needs more.

    Raises:
        ValueError: ``factor`` is not a power of two, or ``channels`` downsample by another factor.
    """
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"codec factor must be a power of two, got {factor}")
    n = int(math.log2(factor)) + 1
    if channels is not None:
        if len(channels) != n:
            raise ValueError(f"method.conditioning_embedding_channels={list(channels)} downsamples by "
                             f"{2 ** (len(channels) - 1)}, but the model space is {factor}x smaller than the image "
                             f"(give {n} widths)")
        return tuple(int(c) for c in channels)
    widths = list(DEFAULT_EMBEDDING_CHANNELS[:n])
    while len(widths) < n:
        widths.append(2 * widths[-1])
    return tuple(widths)


def build_controlnet(unet: Any, factor: int, conditioning_channels: int = 3,
                     embedding_channels: Sequence[int] | None = None, seed: int = 0) -> Any:
    """A `ControlNetModel` initialised from ``unet`` (encoder and middle block copied, zero convolutions).

    Args:
        unet: the frozen backbone `UNet2DConditionModel`.
        factor: the codec's downsampling factor (see `embedding_channels_for`).
        conditioning_channels: channels of the conditioning image (3: the mask repeated as an RGB image, as
            diffusers' ``train_controlnet.py`` feeds conditioning images; 1: the bare mask).
        embedding_channels: conditioning-embedding widths (None: derived from ``factor``).
        seed: seeds the randomly initialised layers (the conditioning embedding's convolutions), without touching
            the global random state.
    """
    from diffusers import ControlNetModel

    widths = embedding_channels_for(factor, embedding_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=widths,
                                               conditioning_channels=conditioning_channels)
    return controlnet.to(device=unet.device, dtype=unet.dtype)


def mask_condition(masks: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Conditioning images from masks.

    Args:
        masks: (N, H, W) bool or float in [0, 1].
        channels: 1 or 3 (the mask repeated on each channel).

    Returns:
        (N, channels, H, W) float in [0, 1] (1 = lesion), the range diffusers' ControlNet scripts feed.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    if channels not in (1, 3):
        raise ValueError(f"conditioning channels must be 1 or 3, got {channels}")
    return masks.float()[:, None].expand(-1, channels, -1, -1).contiguous()


def controlnet_residuals(controlnet: Any, image: torch.Tensor, scale: float = 1.0) -> Any:
    """A `bench.diffusion.sampling.UnetKwargsFn` adding ControlNet residuals to every UNet call.

    Under classifier-free guidance the UNet's batch is ``[uncond, cond]``; the conditioning image is repeated to
    that batch, so both branches get the residuals (as diffusers' ControlNet pipeline does outside guess mode).

    Args:
        controlnet: a `ControlNetModel`.
        image: (N, C, H, W) conditioning images at the image resolution (`mask_condition`).
        scale: ``controlnet_conditioning_scale``, multiplying every residual.
    """

    def unet_kwargs(x: torch.Tensor, t: Any, context: torch.Tensor) -> dict[str, Any]:
        if x.shape[0] % image.shape[0]:
            raise ValueError(f"UNet batch {x.shape[0]} is not a multiple of the {image.shape[0]} conditioning images")
        cond_image = image.repeat(x.shape[0] // image.shape[0], 1, 1, 1)
        down, mid = controlnet(x.to(controlnet.dtype), t, encoder_hidden_states=context.to(controlnet.dtype),
                               controlnet_cond=cond_image.to(device=x.device, dtype=controlnet.dtype),
                               conditioning_scale=scale, return_dict=False)
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    return unet_kwargs


def noise_generator(seed: int, index: int) -> torch.Generator:
    """The noise generator of condition ``index``: ``derive_seed(seed, 17, index)``, as SD-Finetune and DiDGen seed
    theirs, so methods given the same run seed start condition ``index`` from the same noise."""
    from bench.interface import derive_seed

    return torch.Generator().manual_seed(derive_seed(seed, 17, index))


def save_controlnet(controlnet: Any, folder: Path) -> None:
    """Write ``controlnet`` in diffusers' ``save_pretrained`` layout (``config.json`` +
    ``diffusion_pytorch_model.safetensors``) to ``folder``."""
    controlnet.save_pretrained(str(folder), safe_serialization=True)


def load_controlnet(folder: Path, device: Any = None) -> Any:
    """A frozen `ControlNetModel` read from a `save_controlnet` folder, on ``device``.

    Raises:
        FileNotFoundError: ``folder`` holds no ``config.json`` (one line naming what was expected).
    """
    from diffusers import ControlNetModel

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"no trained ControlNet in {folder} (expected save_pretrained output: "
                                "config.json and diffusion_pytorch_model.safetensors)")
    controlnet = ControlNetModel.from_pretrained(str(folder)).eval().requires_grad_(False)
    return controlnet.to(device=device) if device is not None else controlnet
