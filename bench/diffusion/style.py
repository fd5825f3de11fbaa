"""Attention-space style injection (StyleID-like K/V injection) and the latent mean/std style loss.

Used by the thesis chapter 5 dual-branch generator (``methods/dualbranch``); generic over any diffusers
``UNet2DConditionModel``.

K/V injection (Chung et al., CVPR 2024, "StyleID"; thesis section 5.3, Fig. 5.3): a style image's self-attention
keys and values are recorded per layer and per denoising step (`StyleKV` in ``"record"`` mode, e.g. during its
DDIM inversion); later, in ``"inject"`` mode, chosen batch rows ("style rows") of the same layers attend with

    q_hat = gamma * q[query_row] + (1 - gamma) * q[style_row],   softmax(tau * q_hat K_style^T / sqrt(d)) V_style

where ``query_row`` is another batch row (the layout branch), ``gamma`` the query preservation (thesis: full
replacement, 1; StyleID: 0.75) and ``tau`` the attention temperature (thesis: none, 1; StyleID: 1.5). Scaling the
query by ``tau`` scales the logits by ``tau``, which is how the temperature is applied. Keys/values are handled
before the heads are split, shape (B, N, D).

StyleID proper takes the query to blend with from another image's pass rather than from a row of the same call:
the content image's queries are recorded during its own inversion (mode ``"record_queries"``) and `plan` with
``recorded_queries=True`` blends them in, ``q_hat = gamma * q_content + (1 - gamma) * q_current``.

Install with ``unet.set_attn_processor(injecting_processors(unet, store, kv))``: every layer gets an
`InjectingAttnProcessor`, a `bench.diffusion.attention.StoringAttnProcessor` (attention capture keeps working) that
records or injects on the layers ``kv.layers`` names.

Style loss (thesis Eq. 5.8): ``||mu(z) - mu(z_s)||^2 + ||sigma(z) - sigma(z_s)||^2`` with per-channel mean and
standard deviation over (H, W) (AdaIN statistics); `adain` normalises latents to another's statistics (StyleID's
initial-latent AdaIN).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.diffusion.attention import AttentionStore, StoringAttnProcessor, layer_info

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)


def decoder_self_attention_layers(unet: Any, last: int | None = None) -> list[str]:
    """Processor names of the UNet decoder's (up blocks') self-attention layers, in forward order.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        last: keep only the last ``last`` of them (the highest-resolution ones); None keeps all. StyleID's
            decoder layers 7-11 of SD (0-11 over its output blocks) are the last 5 of SD 2.1's 9 up-block layers.
    """
    names = [n for n in unet.attn_processors if layer_info(n).place == "up" and not layer_info(n).cross]
    if last is None:
        return names
    if last < 0:
        raise ValueError(f"last must be >= 0 or None, got {last}")
    return names[max(len(names) - last, 0):] if last else []


class StyleKV:
    """Self-attention keys/values of a style batch, per layer and per step, and the injection plan.

    Args:
        layers: processor names whose K/V are recorded and injected.
        gamma: query preservation: weight of the query row's query (1 = full replacement, thesis).
        temperature: attention temperature multiplying the style rows' logits (1 = none, thesis).

    Modes (attribute ``mode``): ``"off"`` (plain attention), ``"record"`` (every call of a selected layer appends
    its (B, N, D) keys and values, detached: call ``k`` of a layer is step ``k``), ``"record_queries"`` (the same
    for its queries only, e.g. during a content image's inversion), ``"inject"`` (see `plan`).
    """

    def __init__(self, layers: Sequence[str], gamma: float = 1.0, temperature: float = 1.0) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.layers = frozenset(layers)
        self.gamma, self.temperature = float(gamma), float(temperature)
        self.mode = "off"
        self.keys: dict[str, list[Any]] = {n: [] for n in self.layers}
        self.values: dict[str, list[Any]] = {n: [] for n in self.layers}
        self.queries: dict[str, list[Any]] = {n: [] for n in self.layers}
        self.step = 0
        self.recorded_queries = False
        self.style_rows: Any = None
        self.query_rows: Any = None
        self.kv_rows: Any = None

    @property
    def recorded_steps(self) -> int:
        """Steps recorded (the same for every layer when all layers ran on every call)."""
        return min((len(v) for v in self.keys.values()), default=0)

    @property
    def recorded_query_steps(self) -> int:
        """Steps whose queries were recorded (mode ``"record_queries"``)."""
        return min((len(v) for v in self.queries.values()), default=0)

    def plan(self, step: int, style_rows: Sequence[int], query_rows: Sequence[int], kv_rows: Sequence[int],
             recorded_queries: bool = False) -> None:
        """Switch to ``"inject"`` for the next UNet call(s).

        Args:
            step: index of the recorded step whose K/V (and recorded queries) are used.
            style_rows: batch rows of the UNet call that receive the style K/V.
            query_rows: for each style row, the batch row whose query it takes (itself: StyleID on one trajectory).
            kv_rows: for each style row, the row of the recorded style batch whose K/V it uses.
            recorded_queries: ``query_rows`` index the batch recorded in ``"record_queries"`` mode (StyleID: the
                content image's queries from its inversion at the same step) instead of the current call's batch.
        """
        import torch

        if not (len(style_rows) == len(query_rows) == len(kv_rows)):
            raise ValueError("style_rows, query_rows and kv_rows must have the same length")
        if not 0 <= step < self.recorded_steps:
            raise IndexError(f"step {step} not recorded (recorded: {self.recorded_steps})")
        if recorded_queries and not 0 <= step < self.recorded_query_steps:
            raise IndexError(f"queries of step {step} not recorded (recorded: {self.recorded_query_steps})")
        self.mode, self.step, self.recorded_queries = "inject", int(step), bool(recorded_queries)
        self.style_rows = torch.as_tensor(list(style_rows), dtype=torch.long)
        self.query_rows = torch.as_tensor(list(query_rows), dtype=torch.long)
        self.kv_rows = torch.as_tensor(list(kv_rows), dtype=torch.long)

    def reset(self) -> None:
        """Forget the recorded K/V and queries and switch off."""
        self.mode, self.recorded_queries = "off", False
        for n in self.layers:
            self.keys[n].clear()
            self.values[n].clear()
            self.queries[n].clear()

    def apply(self, name: str, query: "Tensor", key: "Tensor", value: "Tensor") -> tuple["Tensor", "Tensor", "Tensor"]:
        """Record or inject for layer ``name`` (called by `InjectingAttnProcessor`)."""
        if self.mode == "off" or name not in self.layers:
            return query, key, value
        if self.mode == "record":
            self.keys[name].append(key.detach())
            self.values[name].append(value.detach())
            return query, key, value
        if self.mode == "record_queries":
            self.queries[name].append(query.detach())
            return query, key, value
        rows, src, kv = self.style_rows, self.query_rows, self.kv_rows
        style_k = self.keys[name][self.step][kv].to(key.dtype)
        style_v = self.values[name][self.step][kv].to(value.dtype)
        if style_k.shape[1:] != key.shape[1:]:
            raise ValueError(f"{name}: recorded keys {tuple(style_k.shape)} do not match the layer's {tuple(key.shape)}")
        if self.recorded_queries:
            q_src = self.queries[name][self.step][src].to(query.dtype)
            if q_src.shape[1:] != query.shape[1:]:
                raise ValueError(f"{name}: recorded queries {tuple(q_src.shape)} do not match the layer's "
                                 f"{tuple(query.shape)}")
        else:
            q_src = query[src]
        q_hat = self.gamma * q_src + (1.0 - self.gamma) * query[rows]
        query, key, value = query.clone(), key.clone(), value.clone()
        query[rows] = q_hat * self.temperature
        key[rows] = style_k
        value[rows] = style_v
        return query, key, value


class InjectingAttnProcessor(StoringAttnProcessor):
    """A `StoringAttnProcessor` that lets a `StyleKV` record or replace its self-attention Q/K/V."""

    def __init__(self, store: AttentionStore | None, name: str, kv: StyleKV, fused: bool = True) -> None:
        super().__init__(store, name, fused)
        self.kv = kv

    def adjust_qkv(self, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
        return self.kv.apply(self.name, query, key, value)


def injecting_processors(unet: Any, store: AttentionStore | None, kv: StyleKV, fused: bool = True) -> dict[str, Any]:
    """A complete processor dict for ``unet.set_attn_processor``: an `InjectingAttnProcessor` on every layer."""
    unknown = kv.layers - set(unet.attn_processors)
    if unknown:
        raise ValueError(f"StyleKV names layers the UNet does not have: {sorted(unknown)[:3]}")
    return {name: InjectingAttnProcessor(store, name, kv, fused) for name in unet.attn_processors}


def channel_statistics(z: "Tensor", eps: float = 1e-6) -> tuple["Tensor", "Tensor"]:
    """Per-channel mean and standard deviation over (H, W) of latents (N, C, H, W): two (N, C) tensors.

    The standard deviation is the population one (divide by H*W), ``sqrt(var + eps)`` so that its gradient is finite.
    """
    mean = z.mean(dim=(-2, -1))
    var = z.var(dim=(-2, -1), unbiased=False)
    return mean, (var + eps).sqrt()


def adain(content: "Tensor", style: "Tensor", eps: float = 1e-6) -> "Tensor":
    """AdaIN of latents (N, C, H, W): each channel of ``content`` normalised over (H, W), then given ``style``'s
    per-channel mean and standard deviation (`channel_statistics`; ``style`` is (N, ...) or (1, ...)).

    StyleID's initial-latent AdaIN (Chung et al. 2024) divides by torch's unbiased std + 1e-4; with population
    standard deviations on both sides the ratio ``sigma_style / sigma_content`` is the same, up to the epsilons.
    """
    mu_c, sd_c = channel_statistics(content, eps)
    mu_s, sd_s = channel_statistics(style, eps)
    return (content - mu_c[..., None, None]) / sd_c[..., None, None] * sd_s[..., None, None] + mu_s[..., None, None]


def style_statistics_loss(z: "Tensor", z_style: "Tensor", reduction: str = "sum") -> "Tensor":
    """Latent style loss (thesis Eq. 5.8): ``||mu(z) - mu(z_s)||^2 + ||sigma(z) - sigma(z_s)||^2`` per sample.

    Args:
        z: latents (N, C, H, W) (with gradient).
        z_style: style latents (N, C, H, W) or (1, C, H, W) at the same step.
        reduction: ``"sum"`` over the batch (each sample then takes the gradient step it would take alone) or
            ``"mean"``.

    Returns:
        A scalar.
    """
    mu, sigma = channel_statistics(z)
    mu_s, sigma_s = channel_statistics(z_style.detach())
    per_sample = (mu - mu_s).pow(2).sum(-1) + (sigma - sigma_s).pow(2).sum(-1)
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got '{reduction}'")


def check_injection_options(config: Any) -> None:
    """Raise ConfigError unless ``config``'s ``query_gamma``, ``attn_temperature`` and ``inject_layers`` are valid
    (the K/V-injection options shared by the dual-branch generator and ControlNet+StyleID)."""
    from bench.config import ConfigError

    if not 0.0 <= config.query_gamma <= 1.0:
        raise ConfigError(f"method.query_gamma must be in [0, 1], got {config.query_gamma}")
    if config.attn_temperature <= 0:
        raise ConfigError(f"method.attn_temperature must be > 0, got {config.attn_temperature}")
    if config.inject_layers is not None and config.inject_layers < 0:
        raise ConfigError(f"method.inject_layers must be >= 0 or null, got {config.inject_layers}")
