"""ZestGuide's segmentation loss (Couairon et al., ICCV 2023, section 3; official code ``zestguide_utils.bce_loss2``).

Each segment ``i`` (a text segment with tokens ``K_i``) has an estimated segmentation ``S_i``, the sum over its
tokens of the cross-attention probabilities (mean over heads and layers). With ``a_i = scale * S_i`` and
``n_i = a_i / (max a_i + 1e-4)``, and the input mask ``M_i`` (area-resized, soft):

    L = mean_i BCE(a_i, M_i) + mean_i BCE(n_i, M_i)

where each BCE is a mean over pixels of clamped (``[eps, 1 - eps]``) inputs, and pixels where both the map and the
mask are below a gate (``gate`` for ``a``, ``ls`` for ``n``) carry no gradient (their map value is zeroed, as the
code's detached multiplicative mask does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def zest_loss(maps: torch.Tensor, masks: torch.Tensor, scale: float = 10.0, gate: float = 0.01, ls: float = 0.1,
              eps: float = 1e-3) -> torch.Tensor:
    """ZestGuide's loss of one image.

    Args:
        maps: (S, h, w) estimated segmentation per segment (attention probabilities summed over its tokens).
        masks: (S, h, w) input masks in [0, 1] at the same side.
        scale: multiplier of the maps before the first BCE (code: ``loss_scaler`` 10 for SD 1.4).
        gate, ls: gradient gates of the raw and max-normalised maps (code: 0.01 and ``loss_ls`` 0.1).
        eps: clamp of maps and masks inside the BCE (code: 1e-3).

    Returns:
        A scalar; with ``scale = 1`` a map equal to a binary mask scores ``2 H(eps)`` (``H`` the binary entropy),
        the minimum over maps.
    """
    a = scale * maps.flatten(1)
    m = masks.to(a.dtype).flatten(1)
    n = a / (a.amax(-1, keepdim=True) + 1e-4)
    a = a * ((a > gate) | (m > gate)).to(a.dtype).detach()
    n = n * ((n > ls) | (m > ls)).to(a.dtype).detach()
    target = m.clamp(eps, 1 - eps)
    bce = F.binary_cross_entropy(a.clamp(eps, 1 - eps), target, reduction="none").mean(-1)
    bce_norm = F.binary_cross_entropy(n.clamp(eps, 1 - eps), target, reduction="none").mean(-1)
    return bce.mean() + bce_norm.mean()


def segment_maps(store: object, resolutions: tuple[int, ...], token_groups: list[list[int]],
                 side: int) -> torch.Tensor:
    """Estimated segmentations (B, S, side, side): per segment, the sum over its token positions of the
    cross-attention probabilities, mean over the recorded layers of each resolution in ``resolutions``, each resized
    (bilinear) to ``side``, then averaged over resolutions (code: 16x16 and 32x32 layers resized to 32)."""
    per_res = []
    for res in resolutions:
        ca = store.maps(res, "cross")  # type: ignore[attr-defined]
        seg = torch.stack([ca[..., group].sum(-1) for group in token_groups], 1)  # (B, S, res, res)
        if res != side:
            seg = F.interpolate(seg, size=(side, side), mode="bilinear", align_corners=False)
        per_res.append(seg)
    return sum(per_res) / len(per_res)
