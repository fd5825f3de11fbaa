"""mini-sd: a small pixel-space text-to-image diffusion model with Stable Diffusion's components.

Components (all standard diffusers / transformers classes, so methods use one code path for mini-sd and SD):
    * ``unet``: `UNet2DConditionModel` on 32x32 RGB pixels ([-1, 1]), blocks of 32/64/128 channels, cross-
      attention at 16x16 and 8x8 (7 cross-attention layers), conditioned on 77 text-token states.
    * ``text_encoder``: `CLIPTextModel`, mini-clip's text tower after its stage 1 (frozen during pretraining).
    * ``tokenizer``: mini-clip's `CLIPTokenizer` (whole-word BPE over the mini worlds' vocabulary).
    * ``scheduler``: `DDPMScheduler`, 1000 steps, cosine ("squaredcos_cap_v2") betas, epsilon prediction.
    * codec: `IdentityCodec` (no VAE: pixel space).

Pretraining (`MiniSDRecipe`) is on the generic world only, with the denoising loss plus an auxiliary
cross-attention loss that puts each object word's (texture, colour and shape word) attention mass on that
object's mask, at the 16x16 and 8x8 layers, for timesteps below ``aux_max_t``. The model card states this.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiniSDArch:
    """Architecture of mini-sd's UNet."""

    sample_size: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    heads: int = 8
    norm_groups: int = 8


def unet_config(arch: MiniSDArch, cross_attention_dim: int) -> dict[str, Any]:
    """Keyword arguments of `UNet2DConditionModel` for ``arch``: attention at every block but the first."""
    n = len(arch.channels)
    return dict(sample_size=arch.sample_size, in_channels=3, out_channels=3, block_out_channels=list(arch.channels),
                layers_per_block=arch.layers_per_block,
                down_block_types=["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1),
                up_block_types=["CrossAttnUpBlock2D"] * (n - 1) + ["UpBlock2D"],
                cross_attention_dim=cross_attention_dim, attention_head_dim=arch.heads,
                norm_num_groups=arch.norm_groups)


SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                        clip_sample=True, clip_sample_range=1.0)


@dataclass(frozen=True)
class MiniSDRecipe:
    """How mini-sd is pretrained (``bench foundation train mini-sd``).

    The learning rate follows the wall clock (warm-up, then cosine decay over ``minutes``), so the recipe
    ends on time on a shared machine; the number of steps reached is recorded in the model card.
    """

    arch: MiniSDArch = MiniSDArch()
    seed: int = 0
    batch_size: int = 16
    lr: float = 5e-4
    warmup_steps: int = 50
    minutes: float = 68.0
    max_steps: int = 20_000
    caption_dropout: float = 0.1
    ema_decay: float = 0.998
    aux_weight: float = 0.05
    """Weight of the attention-mask loss (KL from the mask-uniform distribution to the word's map)."""
    aux_max_t: int = 700
    """The attention loss applies to timesteps below this (above it the object is not visible in x_t)."""
    aux_resolutions: tuple[int, ...] = (16, 8)
    generic_world_seed: int = 7
    checkpoint_every: int = 20
    init_weights: str | None = None
    """A shipped ``mini-sd.safetensors`` to continue from (its UNet starts both the model and the EMA, its text
    encoder is kept frozen); None trains from scratch with mini-clip's stage-1 text tower."""
    init_sha256: str | None = None
    """The SHA-256 of ``init_weights`` (recorded, and checked on resume)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def continuation(cls, init_weights: str, init_sha256: str, minutes: float) -> "MiniSDRecipe":
        """The second stage (issue 23): the shipped 68-minute model trained on, same world and losses, at a larger
        batch, a lower peak learning rate and a slower EMA for a longer run."""
        return cls(batch_size=32, lr=3e-4, minutes=minutes, max_steps=100_000, ema_decay=0.999, seed=1,
                   init_weights=init_weights, init_sha256=init_sha256)


def object_word_targets(objects: list[Any], res: int, max_length: int) -> tuple[Any, Any]:
    """Target distributions of one scene's object words at side ``res``.

    Args:
        objects: the scene's `WorldObject`s (left to right, as in its caption).
        res: attention-map side.
        max_length: token sequence length (77).

    Returns:
        targets (max_length, res*res): for each object word token (texture, colour, shape), the object's mask
        area-downsampled to ``res`` and normalised to sum one; zero rows elsewhere. weights (max_length,):
        1 for those tokens. Token index = word index + 1 (BOS), valid because every world word is one token.
    """
    import torch
    import torch.nn.functional as F

    from bench.data.generic_world import word_positions

    targets = torch.zeros(max_length, res * res)
    weights = torch.zeros(max_length)
    for obj, pos in zip(objects, word_positions(objects)):
        mask = torch.from_numpy(obj.mask).float()[None, None]
        small = F.adaptive_avg_pool2d(mask, res).flatten()
        if small.sum() <= 0:
            continue
        small = small / small.sum()
        words = [pos["colour"], pos["shape"]] + ([pos["colour"] - 1] if obj.texture != "plain" else [])
        for w in words:
            targets[w + 1] = small
            weights[w + 1] = 1.0
    return targets, weights


def attention_mask_loss(store: Any, targets: dict[int, Any], weights: Any) -> Any:
    """Mean KL(target || normalised map) over object-word tokens and recorded cross-attention layers.

    Args:
        store: an `AttentionStore` in ``last`` mode with ``keep_grad=True`` after a UNet call.
        targets: per resolution, (B, L, res*res) target distributions (zero rows for other tokens).
        weights: (B, L) token weights (0 for tokens without a target).
    """
    import torch

    total, layers = 0.0, 0
    for name, maps in store.layer_maps().items():
        res = store.resolution_of[name]
        if res not in targets:
            continue
        p = maps.float().transpose(1, 2)  # (B, L, Q)
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-8)
        t = targets[res]
        kl = (t * (torch.log(t.clamp_min(1e-8)) - torch.log(p.clamp_min(1e-8)))).sum(-1)
        total = total + (kl * weights).sum() / weights.sum().clamp_min(1.0)
        layers += 1
    if layers == 0:
        raise RuntimeError("attention_mask_loss: no cross-attention maps at the target resolutions were recorded")
    return total / layers
