"""A small U-ViT (Bao et al. 2023; CXR-IRGen's ``model/uvit.py``, adapted from ``baofff/U-ViT``).

No maintained package ships U-ViT, so it is written here with the reference structure: tokens
``[context, time, patches]`` (``extras = 2``), a learned position embedding, ``depth // 2`` in-blocks, one mid
block and ``depth // 2`` out-blocks whose inputs are joined to the matching in-block output by ``Linear(2D -> D)``
(long skips), LayerNorm, a linear patch decoder and a final 3x3 convolution. The time embedding is the sinusoidal
embedding of the timestep (``mlp_time_embed=False``). Paper settings (U-ViT-L/2): ``dim=1024, depth=20, heads=16``
at 4x32x32 latents; the mini profile uses a few blocks of width 64 on 32 px pixels.

`UViTDenoiser` wraps it with the UNet calling convention of `bench.diffusion.sampling` (``model(x, t,
encoder_hidden_states=c).sample``; ``config.sample_size``), so the same training and sampling code serves both
backbones.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal timestep embedding (B,) -> (B, dim), as U-ViT / guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class Block(nn.Module):
    """Pre-norm transformer block with an optional long-skip input (``Linear(2D -> D)``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, skip: bool = False) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """U-ViT on (B, C, S, S) inputs with one context token (B, 1, D)."""

    def __init__(self, img_size: int = 32, patch_size: int = 2, in_chans: int = 4, embed_dim: int = 1024,
                 depth: int = 20, num_heads: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.patch_size, self.in_chans, self.embed_dim = patch_size, in_chans, embed_dim
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        n = (img_size // patch_size) ** 2
        self.extras = 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + n, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.in_blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth // 2)])
        self.mid_block = Block(embed_dim, num_heads, mlp_ratio)
        self.out_blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, skip=True) for _ in range(depth // 2)])
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size ** 2 * in_chans)
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(b)
        time = timestep_embedding(timesteps.to(x.device), self.embed_dim)[:, None].to(tokens.dtype)
        x = torch.cat([context.to(tokens.dtype), time, tokens], dim=1) + self.pos_embed
        skips = []
        for blk in self.in_blocks:
            x = blk(x)
            skips.append(x)
        x = self.mid_block(x)
        for blk in self.out_blocks:
            x = blk(x, skips.pop())
        x = self.decoder_pred(self.norm(x))[:, self.extras:]
        p = self.patch_size
        x = x.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        return self.final_layer(x)


class UViTDenoiser(nn.Module):
    """U-ViT plus the context projection ``Linear(d_clip -> D)`` with the UNet calling convention.

    ``encoder_hidden_states`` is the fused CLIP vector (B, 1, d_clip): ``(text_pooled + image) / 2`` with RIE, the
    pooled text vector without; it is projected here (trainable, random init), as the reference code does.
    """

    def __init__(self, uvit: UViT, context_dim: int, sample_size: int) -> None:
        super().__init__()
        self.uvit = uvit
        self.context_proj = nn.Linear(context_dim, uvit.embed_dim)
        self.config = SimpleNamespace(sample_size=sample_size, out_channels=uvit.in_chans, in_channels=uvit.in_chans)

    @property
    def dtype(self) -> torch.dtype:
        return self.context_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.context_proj.weight.device

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **_: Any) -> Any:
        t = timestep if torch.is_tensor(timestep) else torch.tensor(timestep)
        t = t.to(sample.device)
        if t.ndim == 0:
            t = t.expand(sample.shape[0])
        out = self.uvit(sample, t, self.context_proj(encoder_hidden_states))
        return SimpleNamespace(sample=out)
