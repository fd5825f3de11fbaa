"""Attention capture for diffusers' `UNet2DConditionModel`: an `AttentionStore` and the processors that fill it.

Install with ``unet.set_attn_processor(storing_processors(unet, store))`` (a complete dict keyed by the
module paths of ``unet.attn_processors``). Every processor computes standard attention, explicitly
(softmax(QK^T / sqrt(d)) V, the computation of diffusers' classic ``AttnProcessor``), so its output equals
the unprocessed layer's up to floating-point rounding, and hands the probabilities to the store when the
store selects that layer. Layers the store does not select keep using PyTorch's fused SDPA kernel, so
capture costs nothing where it is not needed.

What is recorded (`AttentionStore`):
    maps of shape (B, Q, K) per layer, the mean over heads, where Q = h*w query pixels of the layer's square
    feature map and K the keys (text tokens for cross-attention, pixels for self-attention). Each row sums to
    one over the keys. ``mode`` decides what is kept:

    * ``"average"``: one running sum per layer over all recorded steps. Memory: one (B, Q, K) float32 tensor
      per selected layer (SD 1.5, 16x16 cross maps, 77 tokens, B=2: 10 layers x 158 KB).
    * ``"per_step"``: every step's map per layer. Memory: steps x layers x (B, Q, K) (x 50 for 50 steps).
    * ``"last"``: only the most recent step's maps (what guidance losses read). Memory as ``"average"``.

    With ``keep_grad=True`` the maps keep their autograd graph (for attention guidance of the latents,
    e.g. DiDGen / chapter 5 layout guidance, Attn-Refocus, and for attention losses during training); use
    it with ``mode="last"`` so that graphs of old steps are freed.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerInfo:
    """What the store knows about an attention layer when deciding whether to record it.

    Attributes:
        name: module path of the processor, e.g. ``up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor``.
        cross: True for cross-attention (``attn2``), False for self-attention (``attn1``).
        place: ``"down"``, ``"mid"`` or ``"up"``.
    """

    name: str
    cross: bool
    place: str


def layer_info(name: str) -> LayerInfo:
    """Parse a processor's module path into a `LayerInfo`."""
    place = "down" if name.startswith("down_blocks") else "mid" if name.startswith("mid_block") else "up"
    return LayerInfo(name=name, cross=".attn2." in f".{name}." or name.endswith("attn2.processor"), place=place)


class AttentionStore:
    """Collects attention maps from `StoringAttnProcessor`s.

    Args:
        cross: record cross-attention layers.
        self_attention: record self-attention layers.
        resolutions: feature-map sides to record (e.g. ``{16}``); None records every resolution.
        places: subset of ``{"down", "mid", "up"}`` to record; None records all.
        mode: ``"average"``, ``"per_step"`` or ``"last"`` (see the module doc for memory).
        keep_grad: keep the autograd graph of recorded maps (guidance, attention losses).
        select: optional extra predicate on `LayerInfo`.

    The sampler (or the user) calls `begin_step` with the timestep before each UNet call; `batch_slice`
    restricts recording to part of the batch (the conditional half under classifier-free guidance).
    """

    def __init__(self, cross: bool = True, self_attention: bool = False, resolutions: set[int] | None = None,
                 places: set[str] | None = None, mode: str = "average", keep_grad: bool = False,
                 select: Callable[[LayerInfo], bool] | None = None) -> None:
        if mode not in ("average", "per_step", "last"):
            raise ValueError(f"AttentionStore mode must be 'average', 'per_step' or 'last', got '{mode}'")
        self.cross, self.self_attention = cross, self_attention
        self.resolutions, self.places = resolutions, places
        self.mode, self.keep_grad = mode, keep_grad
        self._select = select
        self.active = True
        self.batch_slice: slice | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.last: dict[str, Any] = {}
        self.steps: list[tuple[int, dict[str, Any]]] = []
        self.timestep: int | None = None
        self.resolution_of: dict[str, int] = {}

    def wants_layer(self, info: LayerInfo) -> bool:
        """Whether this layer may be recorded at all (resolution is checked at call time)."""
        if info.cross and not self.cross or (not info.cross and not self.self_attention):
            return False
        if self.places is not None and info.place not in self.places:
            return False
        return self._select is None or self._select(info)

    def wants_resolution(self, res: int) -> bool:
        return self.resolutions is None or res in self.resolutions

    def begin_step(self, timestep: int | float | Any) -> None:
        """Mark the start of a denoising step (per-step mode opens a new slot)."""
        t = int(timestep.item() if hasattr(timestep, "item") else timestep)
        self.timestep = t
        self.last = {}
        if self.mode == "per_step":
            self.steps.append((t, {}))

    def record(self, name: str, probs: Any, heads: int, res: int) -> None:
        """Store ``probs`` (B*heads, Q, K), already softmaxed, for layer ``name`` at side ``res``."""
        batch = probs.shape[0] // heads
        maps = probs.reshape(batch, heads, *probs.shape[1:]).mean(1)
        if self.batch_slice is not None:
            maps = maps[self.batch_slice]
        if not self.keep_grad:
            maps = maps.detach()
        maps = maps.float()
        self.resolution_of[name] = res
        self.last[name] = maps
        if self.mode == "average":
            self.sums[name] = maps if name not in self.sums else self.sums[name] + maps
            self.counts[name] = self.counts.get(name, 0) + 1
        elif self.mode == "per_step":
            if not self.steps:
                self.steps.append((self.timestep if self.timestep is not None else -1, {}))
            self.steps[-1][1][name] = maps

    def layer_maps(self, step: int | None = None) -> dict[str, Any]:
        """Recorded maps per layer, (B, Q, K): the average (mode ``average``), step ``step``'s (``per_step``;
        default the last step), or the last call's (``last``)."""
        if self.mode == "average":
            return {n: s / self.counts[n] for n, s in self.sums.items()}
        if self.mode == "per_step":
            if not self.steps:
                return {}
            return self.steps[step if step is not None else -1][1]
        return dict(self.last)

    def maps(self, res: int, kind: str = "cross", step: int | None = None,
             layers: Callable[[str], bool] | None = None) -> Any:
        """Mean over the selected layers of side ``res``: a (B, res, res, K) tensor.

        Args:
            res: feature-map side (16 for SD's 16x16 layers, 16 or 8 for mini-sd).
            kind: ``"cross"`` or ``"self"``.
            step: index into the recorded steps (``per_step`` mode only).
            layers: optional predicate on layer names.

        Raises:
            KeyError: nothing matching was recorded (the message lists what was).
        """
        want_cross = kind == "cross"
        chosen = [m for n, m in self.layer_maps(step).items()
                  if self.resolution_of.get(n) == res and layer_info(n).cross == want_cross
                  and (layers is None or layers(n))]
        if not chosen:
            recorded = sorted({(self.resolution_of[n], "cross" if layer_info(n).cross else "self")
                               for n in self.layer_maps(step)})
            raise KeyError(f"no {kind}-attention maps at resolution {res} recorded; recorded: {recorded}")
        mean = sum(chosen) / len(chosen)
        return mean.reshape(mean.shape[0], res, res, mean.shape[-1])


class StoringAttnProcessor:
    """Standard attention that reports its probabilities to an `AttentionStore`.

    Computes exactly what diffusers' classic ``AttnProcessor`` computes (explicit softmax), for self- and
    cross-attention, with the layer's group norm, spatial norm, residual and rescaling handled the same way.
    When the store is inactive or does not want the layer or resolution, it uses fused SDPA instead if
    ``fused`` (PyTorch's CPU SDPA kernel is slower than the explicit softmax for heads as small as mini-sd's,
    so the mini profile passes ``fused=False``).
    """

    def __init__(self, store: AttentionStore | None, name: str, fused: bool = True) -> None:
        self.store = store
        self.fused = fused
        self.name = name
        self.info = layer_info(name)
        self.wanted = store is not None and store.wants_layer(self.info)

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None, attention_mask: Any = None,
                 temb: Any = None, *args: Any, **kwargs: Any) -> Any:
        import torch
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, query_len, _ = hidden_states.shape
        key_len = query_len if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = self.adjust_qkv(query, key, value)

        res = math.isqrt(query_len)
        capture = (self.wanted and self.store is not None and self.store.active and res * res == query_len
                   and self.store.wants_resolution(res))
        if capture or not self.fused:
            q, k, v = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
            probs = attn.get_attention_scores(q, k, attention_mask)
            if capture:
                self.store.record(self.name, probs, attn.heads, res)  # type: ignore[union-attr]
            out = attn.batch_to_head_dim(torch.bmm(probs, v))
        else:
            heads = attn.heads
            q = query.view(batch, -1, heads, query.shape[-1] // heads).transpose(1, 2)
            k = key.view(batch, -1, heads, key.shape[-1] // heads).transpose(1, 2)
            v = value.view(batch, -1, heads, value.shape[-1] // heads).transpose(1, 2)
            if attention_mask is not None:
                attention_mask = attention_mask.view(batch, heads, -1, attention_mask.shape[-1])
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=attn.scale)
            out = out.transpose(1, 2).reshape(batch, -1, heads * v.shape[-1]).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def adjust_qkv(self, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
        """Hook for subclasses: the layer's (B, Q, D) queries and (B, K, D) keys/values before the heads are split
        (K/V injection, `bench.diffusion.style`); unchanged here."""
        return query, key, value


def storing_processors(unet: Any, store: AttentionStore | None, fused: bool = True) -> dict[str, Any]:
    """A complete processor dict for ``unet.set_attn_processor``: a `StoringAttnProcessor` on every layer."""
    return {name: StoringAttnProcessor(store, name, fused) for name in unet.attn_processors}


def classic_processors(unet: Any) -> dict[str, Any]:
    """diffusers' explicit-softmax ``AttnProcessor`` on every layer (faster than SDPA for tiny heads on CPU)."""
    from diffusers.models.attention_processor import AttnProcessor

    return {name: AttnProcessor() for name in unet.attn_processors}


def token_maps(store: AttentionStore, res: int, token_indices: list[int], step: int | None = None,
               batch_index: int | None = None) -> Any:
    """Cross-attention maps of given tokens: (B, T, res, res) (or (T, res, res) for one ``batch_index``)."""
    maps = store.maps(res, "cross", step=step)[..., token_indices].permute(0, 3, 1, 2)
    return maps if batch_index is None else maps[batch_index]
