"""XBound-Former (Wang et al. 2023, "XBound-Former: Toward Cross-scale Boundary Modeling in Transformers",
IEEE TMI 42), written from the paper with the module layout of the authors' code
(github.com/jcwang123/xboundformer, ``lib/xboundformer.py``) as a guide. A compact, faithful-in-structure version:

* backbone: a PVT-v2 pyramid (overlapping patch embeddings with strides 4, 2, 2, 2; transformer blocks with
  spatial-reduction attention and a depthwise-conv Mix-FFN); widths ``base * (1, 2, 5, 8)`` (PVT-v2-b2 at
  ``base = 64``: 64/128/320/512, heads 1/2/5/8, blocks 3/4/6/3, reduction ratios 8/4/2/1);
* in-scale boundary learner on stages 2-4: features mapped to ``hidden`` channels, a transformer encoder whose
  layers end with a boundary-wise attention gate (the explicit boundary map re-weights the features,
  ``x * w + x``), and a decoder where one learned boundary query attends to the encoded features (the implicit
  boundary token);
* cross-scale boundary learner: features of one scale cross-attend to the boundary token of the other scale,
  (stage 3 with stage 4, then stage 2 with the fused stage 3), concatenated and mixed by a 1x1 conv;
* head: stage-1 features concatenated with the up-sampled fused stage-2 features, conv-BN-ReLU and a 1x1 conv,
  bilinearly up-sampled to the input.

Two ids: ``xbound-former`` (the mini twin: our PVT-v2 at random initialisation, the logit map alone supervised)
and ``xbound-former-pvt`` (the paper profile, issue 22): timm's PVT-v2-b2 encoder initialised from the authors'
ImageNet file ``pvt_v2_b2.pth`` under the weights dir (``$BENCH_WEIGHTS``; converted by timm's
``checkpoint_filter_fn``; missing file = one error line, nothing downloaded), and the boundary gates supervised:
``auxiliary_loss`` adds ``boundary_weight`` (1 [A]) times the mean BCE between each gate's map and the target's
boundary (morphological gradient of the mask, 3x3, max-pooled to the map's grid), which the segmenter trainer adds
to the segmentation loss. Left out: the auxiliary deep-supervision heads of the logit map.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class SRAttention(nn.Module):
    """Multi-head attention whose keys/values come from a ``sr``-times strided copy of the tokens."""

    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.heads, self.sr = heads, sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.reduce = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        src = x
        if self.sr > 1 and h >= self.sr and w >= self.sr:
            src = self.norm(self.reduce(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2))
        k, v = self.kv(src).view(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.fc1(x)
        b, n, c = y.shape
        y = self.dw(y.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(y))


class PVTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SRAttention(dim, heads, sr)
        self.ffn = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.ffn(self.norm2(x), h, w)


class PVTv2(nn.Module):
    """Four-stage PVT-v2 pyramid; returns feature maps at strides 4, 8, 16, 32."""

    def __init__(self, in_channels: int, dims: tuple[int, ...], heads: tuple[int, ...], blocks: tuple[int, ...],
                 srs: tuple[int, ...] = (8, 4, 2, 1), mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)) -> None:
        super().__init__()
        cins = (in_channels, *dims[:-1])
        self.embeds = nn.ModuleList([OverlapPatchEmbed(cins[i], dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2)
                                     for i in range(4)])
        self.stages = nn.ModuleList([nn.ModuleList([PVTBlock(dims[i], heads[i], srs[i], mlp_ratios[i])
                                                    for _ in range(blocks[i])]) for i in range(4)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for d in dims])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for embed, stage, norm in zip(self.embeds, self.stages, self.norms):
            x, h, w = embed(x)
            for block in stage:
                x = block(x, h, w)
            x = norm(x).transpose(1, 2).reshape(x.shape[0], -1, h, w)
            feats.append(x)
        return feats


class BoundaryGate(nn.Module):
    """Boundary-wise attention gate: a conv branch predicts a boundary map ``w``; features become ``x * w + x``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.sigmoid(self.net(x))
        return x * weight + x, weight


class InScaleBoundaryLearner(nn.Module):
    """Encoder layers (self-attention + FFN + boundary gate) and a decoder producing one boundary token."""

    def __init__(self, dim: int, heads: int, layers: int = 2, ffn: int | None = None, max_side: int = 64) -> None:
        super().__init__()
        ffn = ffn or 4 * dim
        self.row = nn.Embedding(max_side, dim // 2)
        self.col = nn.Embedding(max_side, dim - dim // 2)
        self.encoders = nn.ModuleList([nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.1, activation=F.leaky_relu,
                                                                  batch_first=True, norm_first=True)
                                       for _ in range(layers)])
        self.gates = nn.ModuleList([BoundaryGate(dim) for _ in range(layers)])
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.decoders = nn.ModuleList([nn.TransformerDecoderLayer(dim, heads, ffn, dropout=0.1, activation=F.leaky_relu,
                                                                  batch_first=True, norm_first=True)
                                       for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        b, c, h, w = x.shape
        if h > self.row.num_embeddings or w > self.col.num_embeddings:
            raise ValueError(f"feature map {h}x{w} exceeds the position table ({self.row.num_embeddings}); raise max_side")
        pos = torch.cat([self.row.weight[:h, None].expand(h, w, -1), self.col.weight[None, :w].expand(h, w, -1)], -1)
        pos = pos.reshape(1, h * w, c)
        tokens = x.flatten(2).transpose(1, 2) + pos  # learned row/column position embedding, added once
        boundary_maps = []
        for enc, gate in zip(self.encoders, self.gates):
            tokens = enc(tokens)
            gated, weight = gate(tokens.transpose(1, 2).reshape(b, c, h, w))
            tokens = gated.flatten(2).transpose(1, 2)
            boundary_maps.append(weight)
        query = self.query.expand(b, -1, -1)
        for dec in self.decoders:
            query = dec(query, tokens)
        return self.norm(query), tokens.transpose(1, 2).reshape(b, c, h, w), boundary_maps


class CrossScaleLearner(nn.Module):
    """Features of one scale attend to the other scale's boundary token; the two results are fused."""

    def __init__(self, dim: int, heads: int, ffn: int = 512) -> None:
        super().__init__()
        self.low = _TokenCrossAttention(dim, heads, ffn)
        self.high = _TokenCrossAttention(dim, heads, ffn)
        self.mix = nn.Conv2d(2 * dim, dim, 1)

    def forward(self, f_low: torch.Tensor, f_high: torch.Tensor, token_low: torch.Tensor,
                token_high: torch.Tensor) -> torch.Tensor:
        low = self.low(f_low, token_high)
        high = F.interpolate(self.high(f_high, token_low), size=low.shape[-2:])
        return self.mix(torch.cat([low, high], dim=1))


class _TokenCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.LeakyReLU(), nn.Linear(ffn, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, feat: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feat.shape
        x = feat.flatten(2).transpose(1, 2)
        x = self.norm1(x + self.attn(x, token, token, need_weights=False)[0])
        x = self.norm2(x + self.ffn(x))
        return x.transpose(1, 2).reshape(b, c, h, w)


class XBoundFormer(nn.Module):
    """XBound-Former for binary segmentation: images (N, C, H, W) in [0, 1] -> logits (N, 1, H, W).

    Args:
        in_channels: image channels.
        base: width of the first pyramid stage (PVT-v2-b2: 64); stages have ``base * (1, 2, 5, 8)`` channels.
        blocks: transformer blocks per stage (PVT-v2-b2: 3, 4, 6, 3).
        hidden: width of the boundary learners (code: 128 = ``2 * base``); divisible by ``boundary_heads``.
        boundary_heads: attention heads of the boundary learners (code: 8).
        boundary_layers: encoder and decoder layers of each in-scale learner (code: 2 each).

    H and W must be divisible by 32 (four stages with total stride 32).
    """

    def __init__(self, in_channels: int = 3, base: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3),
                 hidden: int | None = None, boundary_heads: int = 8, boundary_layers: int = 2,
                 backbone: nn.Module | None = None, boundary_weight: float = 0.0) -> None:
        super().__init__()
        dims = tuple(base * m for m in (1, 2, 5, 8))
        hidden = hidden or 2 * base
        if hidden % boundary_heads:
            raise ValueError(f"hidden={hidden} must be divisible by boundary_heads={boundary_heads}")
        self.backbone = backbone if backbone is not None else PVTv2(in_channels, dims, heads=(1, 2, 5, 8), blocks=blocks)
        self.boundary_weight = boundary_weight
        self.maps = nn.ModuleList([nn.Conv2d(d, hidden, 1) for d in dims[1:]])
        self.in_scale = nn.ModuleList([InScaleBoundaryLearner(hidden, boundary_heads, boundary_layers)
                                       for _ in dims[1:]])
        self.cross_32 = CrossScaleLearner(hidden, boundary_heads)
        self.cross_21 = CrossScaleLearner(hidden, boundary_heads)
        self.head = nn.Sequential(nn.Conv2d(dims[0] + hidden, base, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU(),
                                  nn.Conv2d(base, 1, 1))
        self.boundary_maps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by 32")
        feats = self.backbone(x)
        tokens, encoded, self.boundary_maps = [], [], []
        for mapping, learner, f in zip(self.maps, self.in_scale, feats[1:]):
            token, enc, maps = learner(mapping(f))
            tokens.append(token)
            encoded.append(enc)
            self.boundary_maps.extend(maps)
        fused_2 = self.cross_32(encoded[1], encoded[2], tokens[1], tokens[2])
        fused_1 = self.cross_21(encoded[0], fused_2, tokens[0], tokens[1])
        low = feats[0]
        y = torch.cat([low, F.interpolate(fused_1, size=low.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


    def auxiliary_loss(self, target: torch.Tensor) -> torch.Tensor:
        """``boundary_weight`` x mean BCE of the last forward's boundary maps against the target's boundary
        (target (N, 1, H, W) in {0, 1}); 0 when the weight is 0. The segmenter trainer adds it to the loss."""
        if not self.boundary_weight or not self.boundary_maps:
            return target.new_zeros(())
        edge = F.max_pool2d(target, 3, 1, 1) - (-F.max_pool2d(-target, 3, 1, 1))  # dilation - erosion
        losses = [F.binary_cross_entropy(m.clamp(1e-6, 1 - 1e-6), F.adaptive_max_pool2d(edge, m.shape[-2:]))
                  for m in self.boundary_maps]
        return self.boundary_weight * torch.stack(losses).mean()


class TimmPVT(nn.Module):
    """timm's PVT-v2 as the pyramid: images -> the four stage maps (N, C_i, H / 2**(i + 2), W / 2**(i + 2))."""

    def __init__(self, variant: str, in_channels: int = 3) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model(variant, pretrained=False, in_chans=in_channels, num_classes=0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.forward_intermediates(x, intermediates_only=True))


#: timm variant and weight file of the paper's encoder (the authors' ``pvt_v2_b2.pth``); base = its first width.
PVT_VARIANT, PVT_FILE, PVT_BASE = "pvt_v2_b2", "pvt_v2_b2.pth", 64


def xbound_former_pvt(in_channels: int = 3, base: int = 64, depth: int = 4, boundary_weight: float = 1.0,
                      weights_dir: str | None = None) -> XBoundFormer:
    """XBound-Former on timm's PVT-v2-b2 initialised from ``<weights dir>/pvt_v2_b2.pth``, with boundary supervision.

    ``base`` and ``depth`` are accepted for the common segmenter signature; the encoder fixes the widths."""
    del base, depth
    from timm.models.pvt_v2 import checkpoint_filter_fn

    from bench.metrics.extractors import MissingWeightsError, load_state_dict, resolve_weights_dir

    path = resolve_weights_dir(weights_dir) / PVT_FILE
    if not path.is_file():
        raise MissingWeightsError(f"missing XBound-Former's ImageNet PVT-v2 encoder: put {PVT_FILE} (the authors' / "
                                  f"timm's {PVT_VARIANT} weights) at {path}; nothing is downloaded")
    encoder = TimmPVT(PVT_VARIANT, in_channels)
    state = checkpoint_filter_fn(load_state_dict(path), encoder.model)
    missing, unexpected = encoder.model.load_state_dict(state, strict=False)
    if [k for k in missing if not k.startswith("head")] or [k for k in unexpected if not k.startswith("head")]:
        raise MissingWeightsError(f"{path}: not {PVT_VARIANT} weights (missing {missing[:2]}, unexpected {unexpected[:2]})")
    return XBoundFormer(in_channels, base=PVT_BASE, backbone=encoder, boundary_weight=boundary_weight)


def xbound_former(in_channels: int = 3, base: int = 64, depth: int = 4) -> XBoundFormer:
    """XBound-Former with PVT-v2-b2 block counts; ``base`` is rounded up to a multiple of 4.

    ``depth`` is accepted for the common segmenter signature; the pyramid always has four stages (stride 32).
    """
    del depth
    return XBoundFormer(in_channels, base=max(4, -(-base // 4) * 4))
