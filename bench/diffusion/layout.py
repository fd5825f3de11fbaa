"""Attention layout guidance and attention-based mask read-out (thesis ch. 4 sections 4.3.4, Eqs. 4.7-4.11).

Shared by DiDGen (chapter 4), the chapter 5 pipeline and the ZestGuide / Attn-Refocus baselines, all of which
steer the latent of a text-to-image UNet so that its attention maps follow a given mask, and read a mask back out
of the attention maps at the end of sampling.

Losses (computed on maps recorded by `bench.diffusion.attention.AttentionStore`):

* `token_softmax`: the Attend-and-Excite normalisation of cross-attention (CA) maps over the prompt tokens,
  ``softmax(scale * A[..., 1:eot])`` (DiDGen code: scale 100), optionally Gaussian-smoothed (thesis text: on;
  released code: off).
* `ca_layout_loss` (Eq. 4.7): ``(1 - sum(A * M) / sum(M)) + sum(A * (1 - M)) / sum(1 - M)`` for one token's
  normalised map ``A`` and the soft mask ``M`` at the map's side.
* `sa_layout_loss` (Eqs. 4.8-4.9), vectorised: with ``m`` the binarised mask and ``b = 1 - m`` at the self-attention
  (SA) side, the mean over lesion pixels ``p`` of ``sum_q A_S[p, q] b_q / sum_q b_q`` equals
  ``m^T A_S b / (|m| |b|)``. `sa_layout_loss_per_pixel` is the per-pixel formulation of the reference code, kept
  as the reference for tests and for ``benchmarks/didgen_guidance.py``.
* `guidance_step_sizes` (Eq. 4.10 with the code's decay): ``eta_i = scale * sqrt(linspace(1, 0.5, T)[i])`` for
  the first ``fraction`` of the ``T`` sampling iterations, 0 afterwards.

Mask read-out (`attention_mask_readout`, Eq. 4.11, after Dataset Diffusion): ``A_CS = (A_S)^tau @ up(A_C)``,
a *matrix* power and a matrix-vector product, min-max normalised, resized, Otsu-thresholded and closed
morphologically (thesis: dilation then erosion; code: no post-processing).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

logger = logging.getLogger(__name__)


def resize_mask_to(mask: "Tensor", side: int, mode: str = "bilinear") -> "Tensor":
    """A mask (H, W) or (B, H, W) (bool or float in [0, 1]) resized to (…, side, side) as float.

    Bilinear (the reference code's resize of condition masks to 16 and 32) keeps it soft.
    """
    import torch.nn.functional as F

    m = mask if mask.is_floating_point() else mask.float()
    squeeze = m.ndim == 2
    if squeeze:
        m = m[None]
    if m.shape[-2:] != (side, side):
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        m = F.interpolate(m[:, None], size=(side, side), mode=mode, **kwargs)[:, 0].clamp(0, 1)
    return m[0] if squeeze else m


def gaussian_smooth(maps: "Tensor", kernel_size: int = 3, sigma: float = 0.5) -> "Tensor":
    """Gaussian smoothing of maps (…, H, W) with reflect padding (Attend-and-Excite default: 3, 0.5)."""
    import torch
    import torch.nn.functional as F

    half = kernel_size // 2
    x = torch.arange(kernel_size, dtype=maps.dtype, device=maps.device) - half
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:])
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    return F.conv2d(flat, kernel).reshape(shape)


def token_softmax(ca: "Tensor", eot: int, scale: float = 100.0, smooth: bool = False,
                  kernel_size: int = 3, sigma: float = 0.5) -> "Tensor":
    """Normalise cross-attention maps over the prompt tokens, as Attend-and-Excite and DiDGen do.

    Args:
        ca: (…, h, w, K) cross-attention probabilities (mean over heads and layers).
        eot: index of the end-of-text token; tokens ``1 .. eot-1`` are kept (BOS and padding dropped).
        scale: softmax temperature multiplier (code: 100).
        smooth: Gaussian-smooth each token map afterwards (thesis text: yes; released code: no).

    Returns:
        (…, h, w, eot - 1): entry ``[..., j - 1]`` is the map of token ``j``.
    """
    if eot < 2:
        raise ValueError(f"eot={eot} leaves no prompt tokens between BOS and EOT")
    out = (scale * ca[..., 1:eot]).softmax(dim=-1)
    if smooth:
        out = gaussian_smooth(out.movedim(-1, -3), kernel_size, sigma).movedim(-3, -1)
    return out


def ca_layout_loss(token_map: "Tensor", mask: "Tensor", eps: float = 1e-8) -> "Tensor":
    """Cross-attention layout loss of one token (thesis Eq. 4.7).

    ``L_CA = (1 - sum(A * M) / sum(M)) + sum(A * (1 - M)) / sum(1 - M)``: 0 when the map equals a binary mask,
    2 when it equals its complement.

    Args:
        token_map: (h, w) or (B, h, w) normalised map of the token (``token_softmax`` output slice).
        mask: mask of the same side(s), float in [0, 1] (soft) or bool.

    Returns:
        A scalar (mean over the batch).
    """
    m = mask.to(token_map.dtype)
    a = token_map
    inside = (a * m).flatten(-2).sum(-1) / (m.flatten(-2).sum(-1) + eps)
    outside = (a * (1 - m)).flatten(-2).sum(-1) / ((1 - m).flatten(-2).sum(-1) + eps)
    return ((1 - inside) + outside).mean()


def sa_layout_loss(sa: "Tensor", mask: "Tensor", threshold: float = 0.5) -> "Tensor":
    """Self-attention layout loss (thesis Eqs. 4.8-4.9), vectorised.

    For every pixel ``p`` inside the binarised mask ``m``, the mean attention it pays to background pixels,
    ``sum_q A_S[p, q] b_q / sum_q b_q``; averaged over ``p``. In matrix form ``m^T A_S b / (|m| |b|)``.

    Args:
        sa: (N, N) or (B, N, N) self-attention, rows are queries, ``N = s * s``.
        mask: (s, s) or (B, s, s) mask at the SA side (float or bool); binarised ``> threshold``.

    Returns:
        A scalar (mean over the batch); 0 when the mask or its complement is empty.
    """
    m = (mask.float() > threshold).to(sa.dtype).flatten(-2)
    b = 1 - m
    if sa.ndim == 2:
        sa, m, b = sa[None], m.reshape(1, -1), b.reshape(1, -1)
    elif m.ndim == 1:
        m, b = m.expand(sa.shape[0], -1), b.expand(sa.shape[0], -1)
    if sa.shape[-1] != m.shape[-1]:
        raise ValueError(f"self-attention has {sa.shape[-1]} keys but the mask has {m.shape[-1]} pixels")
    num = (m[:, None, :] @ sa @ b[:, :, None])[:, 0, 0]
    den = m.sum(-1) * b.sum(-1)
    loss = _safe_ratio(num, den)
    return loss.mean()


def _safe_ratio(num: "Tensor", den: "Tensor") -> "Tensor":
    """``num / den`` where ``den > 0``, else 0 (an empty region contributes no loss)."""
    import torch

    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def sa_layout_loss_per_pixel(sa: "Tensor", mask: "Tensor", threshold: float = 0.5) -> "Tensor":
    """The per-pixel loop formulation of `sa_layout_loss` (as in the reference code): slow, for reference only.

    Args:
        sa: (N, N) self-attention; mask: (s, s) with ``s * s = N``.
    """
    import torch

    m = (mask.float() > threshold).flatten()
    b = (1 - m.to(sa.dtype))
    b_total = b.sum()
    losses = []
    for p in range(m.numel()):
        if m[p]:
            losses.append((sa[p] * b).sum() / b_total)
    if not losses or b_total == 0:
        return sa.sum() * 0
    return torch.stack(losses).mean()


def guidance_step_sizes(n_iterations: int, scale: float = 20.0, scale_range: tuple[float, float] = (1.0, 0.5),
                        fraction: float = 0.5) -> list[float]:
    """Step size of the latent update at each sampling iteration (Eq. 4.10 with the code's decay).

    ``eta_i = scale * sqrt(linspace(scale_range[0], scale_range[1], n_iterations)[i])`` for
    ``i < int(fraction * n_iterations)``, and 0 (no guidance) afterwards.
    """
    import numpy as np

    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    decay = np.sqrt(np.linspace(scale_range[0], scale_range[1], n_iterations))
    last = int(fraction * n_iterations)
    return [float(scale * decay[i]) if i < last else 0.0 for i in range(n_iterations)]


def layout_loss(store: object, mask: "Tensor", token_index: int, eot: int, ca_res: int = 16, sa_res: int = 32,
                use_ca: bool = True, use_sa: bool = True, softmax_scale: float = 100.0, smooth: bool = False,
                batch_index: int = 0) -> "Tensor":
    """``L_CA + L_SA`` from the maps an `AttentionStore` recorded in the last UNet call (thesis section 4.3.4).

    Args:
        store: a `bench.diffusion.attention.AttentionStore` recording cross maps at ``ca_res`` and self maps at
            ``sa_res`` with ``keep_grad=True``.
        mask: (H, W) condition mask, bool or float; resized bilinearly to ``ca_res`` (kept soft) and ``sa_res``
            (binarised inside `sa_layout_loss`).
        token_index: position of the lesion token in the prompt (DiDGen: 4).
        eot: position of the end-of-text token of the prompt.
        use_ca, use_sa: include each term (the ablation of Table 4.7 drops L_CA).
        batch_index: which batch element of the recorded maps to use.
    """
    ca_maps = store.maps(ca_res, "cross")[batch_index]  # type: ignore[attr-defined]
    total = ca_maps.sum() * 0
    if use_ca:
        tokens = token_softmax(ca_maps, eot, scale=softmax_scale, smooth=smooth)
        total = total + ca_layout_loss(tokens[..., token_index - 1], resize_mask_to(mask, ca_res))
    if use_sa:
        sa = store.maps(sa_res, "self")[batch_index].reshape(sa_res * sa_res, sa_res * sa_res)  # type: ignore[attr-defined]
        total = total + sa_layout_loss(sa, resize_mask_to(mask, sa_res))
    return total


def minmax(x: "Tensor", eps: float = 1e-12) -> "Tensor":
    """Global min-max normalisation to [0, 1] (a constant input gives zeros)."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(eps)


def attention_score_map(sa: "Tensor", token_map: "Tensor", tau: int = 4, upsample: str = "bicubic") -> "Tensor":
    """``A_CS = (A_S)^tau @ up(A_C)`` reshaped to the SA side (thesis Eq. 4.11), min-max normalised to [0, 1].

    Args:
        sa: (N, N) self-attention at side ``s`` (``N = s * s``), rows are queries.
        token_map: (h, w) cross-attention map of the lesion token; resized to (s, s) with ``upsample``.
        tau: matrix power (4 in the thesis and code).

    Returns:
        (s, s) float map in [0, 1].
    """
    import math

    import torch

    side = math.isqrt(sa.shape[-1])
    if side * side != sa.shape[-1] or sa.shape[-1] != sa.shape[-2]:
        raise ValueError(f"self-attention must be (N, N) with N a square, got {tuple(sa.shape)}")
    power = minmax(torch.linalg.matrix_power(sa.double(), tau))
    c = resize_mask_to(token_map.double(), side, mode=upsample).flatten()
    return minmax((power @ c).reshape(side, side)).float()


def otsu_binarise(score: "np.ndarray") -> "np.ndarray":
    """Otsu threshold of a [0, 1] map quantised to uint8 (as ``cv2.threshold(..., THRESH_OTSU)`` on 0..255)."""
    import numpy as np
    from skimage.filters import threshold_otsu

    q = np.clip(np.round(score * 255), 0, 255).astype(np.uint8)
    if q.min() == q.max():
        return np.zeros(q.shape, dtype=bool)
    return q > threshold_otsu(q)


def attention_mask_readout(sa: "Tensor", token_map: "Tensor", out_size: int, tau: int = 4,
                           closing_kernel: int = 5, largest_component: bool = False,
                           upsample: str = "bicubic") -> "Tensor":
    """The mask of a generated image from its attention (thesis Eq. 4.11 and the closing of section 4.3.4).

    Args:
        sa: (N, N) self-attention (mean over heads and layers of one side), rows are queries.
        token_map: (h, w) lesion-token cross-attention map.
        out_size: side of the returned mask (the image's side).
        tau: matrix power of ``A_S``.
        closing_kernel: diameter of the elliptical closing element at the output side (0: none; thesis: closing
            with an unstated kernel; code: none).
        largest_component: keep only the largest connected component.
        upsample: interpolation used to bring ``token_map`` to the SA side and the score to ``out_size``.

    Returns:
        (out_size, out_size) bool mask.
    """
    import numpy as np
    import torch
    from skimage import measure, morphology

    score = attention_score_map(sa, token_map, tau=tau, upsample=upsample)
    big = resize_mask_to(score, out_size, mode=upsample)
    mask = otsu_binarise(big.clamp(0, 1).cpu().numpy())
    if closing_kernel > 1:
        radius = closing_kernel // 2
        footprint = morphology.disk(radius) if closing_kernel % 2 else morphology.ellipse(radius, radius)
        padded = np.pad(mask, radius + 1, mode="edge")
        mask = morphology.closing(padded, footprint)[radius + 1:-radius - 1, radius + 1:-radius - 1]
    if largest_component and mask.any():
        labels = measure.label(mask, connectivity=1)
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        mask = labels == counts.argmax()
    return torch.from_numpy(np.ascontiguousarray(mask))
