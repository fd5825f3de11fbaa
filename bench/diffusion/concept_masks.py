"""Attention-guided concept masks (AttenCraft Eq. 3.2-3.3), attention scores and sampling ratios (Eq. 3.4-3.5),
and the per-step concept-subset sampler (section 3.3.4). Pure tensor functions, no model."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SELF_POWER_MODES = ("matrix", "elementwise")
RATIO_MODES = ("adaptive", "equal", "no-softmax")


def minmax(x: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Min-max normalise to [0, 1] over ``dims`` (all dims if None); a constant input becomes 0."""
    dims = dims if dims is not None else tuple(range(x.ndim))
    lo, hi = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def propagate(cross: torch.Tensor, self_attention: torch.Tensor | None, nu: float = 2.0, tau: int = 4,
              self_power_mode: str = "matrix", side: int | None = None) -> torch.Tensor:
    """Cross-attention suppression and self-attention enhancement (Eq. 3.2), as the reference code computes it.

    Args:
        cross: (T, hc, wc) cross-attention maps of T tokens at the cross-attention resolution.
        self_attention: (S*S, S*S) self-attention (rows: query pixels) at the self-attention resolution S; None
            skips the enhancement (Fig. 3.8's "w/o self-attention enhancement"; the maps are upsampled to ``side``).
        nu: element-wise power of the (upsampled, min-max normalised) cross maps.
        tau: power of the min-max normalised self-attention: a matrix power (reference code, Dataset Diffusion)
            or element-wise (the thesis text), by ``self_power_mode``.

    Returns:
        (T, S, S) propagated maps, each min-max normalised to [0, 1].
    """
    if self_power_mode not in SELF_POWER_MODES:
        raise ValueError(f"self_power_mode must be one of {SELF_POWER_MODES}, got {self_power_mode!r}")
    if self_attention is None:
        side = side or cross.shape[-1]
    else:
        side = math.isqrt(self_attention.shape[0])
        if side * side != self_attention.shape[0] or self_attention.shape[0] != self_attention.shape[1]:
            raise ValueError(f"self-attention must be (S*S, S*S), got {tuple(self_attention.shape)}")
    up = F.interpolate(cross[None].float(), size=(side, side), mode="bicubic", align_corners=False)[0]
    suppressed = minmax(up.clamp_min(0) ** nu, (1, 2))
    if self_attention is None:
        return suppressed
    a = minmax(self_attention.double())
    a = torch.linalg.matrix_power(a, int(tau)) if self_power_mode == "matrix" else a ** tau
    a = minmax(a)
    spread = (a @ suppressed.flatten(1).double().T).T.reshape(-1, side, side)
    return minmax(spread, (1, 2)).float()


def delta_masks(concept_maps: torch.Tensor, background: torch.Tensor | None = None, gamma: float = 0.1) -> torch.Tensor:
    """Delta masking (Eq. 3.3): pixel p belongs to concept i iff its map exceeds every competitor's by more than
    ``gamma``; competitors are the other concepts and, when given, the background (start-of-text token) map.

    Args:
        concept_maps: (N, S, S) normalised propagated maps of the concept tokens.
        background: (S, S) normalised propagated map of the start-of-text token, or None.

    Returns:
        (N, S, S) bool, mutually exclusive masks.
    """
    competitors = concept_maps if background is None else torch.cat([concept_maps, background[None]])
    out = []
    for i in range(concept_maps.shape[0]):
        others = torch.cat([competitors[:i], competitors[i + 1:]])
        out.append(concept_maps[i] - others.amax(0) > gamma)
    return torch.stack(out)


def attention_score(maps_per_t: Sequence[torch.Tensor], mask: torch.Tensor, top_n: int = 5) -> float:
    """S_i of Eq. 3.4: over timesteps, the mean of the ``top_n`` largest values of the masked raw cross-attention map.

    Args:
        maps_per_t: raw (h, w) cross-attention maps of one token, one per timestep of T.
        mask: (h, w) mask of the concept at the same resolution (bool, or soft weights in [0, 1]).
    """
    if not maps_per_t:
        raise ValueError("need at least one timestep's map")
    tops = []
    for a in maps_per_t:
        masked = (a.float() * mask.float()).flatten()
        tops.append(masked.topk(min(top_n, masked.numel())).values.mean())
    return float(torch.stack(tops).mean())


def sampling_ratios(scores: Sequence[float], mode: str = "adaptive") -> torch.Tensor:
    """Single-concept sampling probabilities from attention scores (Eq. 3.5).

    ``adaptive``: r_i = 1 - softmax(S_i / sum S)_i; ``no-softmax``: r_i = 1 - S_i / sum S; ``equal``: 1/N.
    For N > 2 the first two sum to N - 1 and are divided by N - 1 (spec 1.4 [I]), so the result always sums to 1.
    """
    if mode not in RATIO_MODES:
        raise ValueError(f"sampling_ratio must be one of {RATIO_MODES}, got {mode!r}")
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    n = s.numel()
    if n < 2:
        raise ValueError("sampling ratios need at least two concepts")
    if mode == "equal":
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    if float(s.sum()) <= 0:
        raise ValueError(f"attention scores must have a positive sum, got {s.tolist()}")
    share = s / s.sum()
    r = 1 - (torch.softmax(share, 0) if mode == "adaptive" else share)
    return r / (n - 1)


def sample_subset(rng: np.random.Generator, ratios: Sequence[float], omega: float) -> list[int]:
    """Concepts of one training step: with probability ``omega`` a multi-concept subset (all concepts for N = 2;
    for N > 2 a uniform size in 2..N then a uniform subset [I]), else one concept drawn from ``ratios``."""
    n = len(ratios)
    if rng.random() < omega:
        size = n if n == 2 else int(rng.integers(2, n + 1))
        return sorted(int(i) for i in rng.choice(n, size=size, replace=False))
    p = np.asarray(ratios, dtype=np.float64)
    return [int(rng.choice(n, p=p / p.sum()))]
