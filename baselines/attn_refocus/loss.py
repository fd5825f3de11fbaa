"""Attention Refocusing losses (Phung, Ge, Huang, CVPR 2024, section 3.2; official code ``loss.py``).

Regions are binary masks at the attention side (the paper: one box per grounded token; here the lesion mask for
``<lesion>`` and its complement for ``<skin>``).

* Cross-Attention Refocusing, per region ``r`` with token map ``A_r`` (normalised over the prompt tokens):
  foreground ``1 - max_{x in r} A_r(x)`` (the token must be strongly present somewhere inside its region) and
  background ``max_{x not in r} A_r(x)`` (and nowhere outside it); ``L_CAR`` is the mean over regions of their sum.
* Self-Attention Refocusing: for every query pixel inside region ``r``, the self-attention mass it puts on pixels
  outside ``r``; ``L_SAR`` is the mean over the region's pixels, then over regions.
"""
from __future__ import annotations

import torch


def car_loss(token_maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-Attention Refocusing loss of one image.

    Args:
        token_maps: (R, h, w) normalised cross-attention map of each region's token.
        masks: (R, h, w) bool region masks; an empty region (or an empty complement) adds no term.

    Returns:
        (loss, min over regions of the max attention inside the region) as scalars; the loss is 0 when each map
        is 1 inside its (non-empty) region and 0 outside, 2 when it is the complement.
    """
    m = masks.to(torch.bool).flatten(1)
    a = token_maps.flatten(1)
    terms, inside_max = [], []
    for r in range(a.shape[0]):
        term = a.new_zeros(())
        if m[r].any():
            peak = a[r][m[r]].max()
            term = term + (1 - peak)
            inside_max.append(peak.detach())
        if (~m[r]).any():
            term = term + a[r][~m[r]].max()
        terms.append(term)
    min_inside = torch.stack(inside_max).min() if inside_max else a.new_ones(())
    return torch.stack(terms).mean(), min_inside


def sar_loss(sa: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Self-Attention Refocusing loss of one image.

    Args:
        sa: (N, N) self-attention (rows are queries, mean over heads and layers), ``N = s * s``.
        masks: (R, s, s) bool region masks.

    Returns:
        A scalar: mean over non-empty regions of ``mean_{p in r} sum_{q not in r} sa[p, q]``; 0 for a block-diagonal
        attention that never leaves the region, 1 - |r|/N for uniform attention.
    """
    m = masks.to(sa.dtype).flatten(1)
    terms = [(m[r] @ sa @ (1 - m[r])) / m[r].sum() for r in range(m.shape[0]) if m[r].sum() > 0]
    return torch.stack(terms).mean() if terms else sa.sum() * 0
