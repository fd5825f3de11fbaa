"""Whether a generated image follows its conditioning mask, on derm-mini: the "lesion darkness" (mean luminance
outside the mask minus inside it), positive for real derm-mini pairs (lesions are darker than the skin) and near zero
for images that ignore the mask. Used by the mask-following checks of ControlNet, ControlNet + StyleID, IP-Adapter,
ZestGuide and pix2pixHD (moved from ``baselines/controlnet/mask_following.py``, issue 22).
"""
from __future__ import annotations

import torch


def lesion_darkness(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image: mean luminance outside the mask minus inside it.

    Args:
        images: (N, 3, H, W) in [0, 1].
        masks: (N, H, W) bool, each with pixels inside and outside.

    Returns:
        (N,) float; positive where the masked region is darker.
    """
    lum = images.float().mean(1)
    return torch.stack([lum[k][~masks[k]].mean() - lum[k][masks[k]].mean() for k in range(len(lum))])
