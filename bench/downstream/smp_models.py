"""The downstream segmenters of MedDiff-FT (A.9) and DiffBoost (B.9), built from the field's libraries.

* ``upernet``: UPerNet (Xiao et al. 2018), segmentation-models-pytorch's ``UPerNet`` on a timm ResNet-18 encoder.
* ``deeplabv3-plus``: DeepLabV3+ (Chen et al. 2018), smp's ``DeepLabV3Plus`` on the same encoder, output stride 16.
* ``swin-transformer``: "Swin Transformer" of MedDiff-FT Table 1, read as Swin-UPerNet (the usual segmentation form;
  the paper leaves it open): smp's ``UPerNet`` on timm's Swin-T (depths 2-2-6-2, window 7, patch 4), with dynamic
  input sizes so any side divisible by 32 works.
* ``nnu-net``: MONAI ``DynUNet``, the nnU-Net architecture (Isensee et al. 2021) with a fixed 2D plan: 3x3 kernels,
  stride-2 stages, instance norm, leaky ReLU. It is the mini twin of nnU-Net, trained by the task's trainer and loss;
  in the paper profile seg-aug's ``task.nnunet: nnunetv2`` runs nnU-Net v2 itself under this id instead (dataset
  export, planning, 2D training, prediction through the nnunetv2 package: `bench.downstream.nnunet`).
* ``monai-attention-unet``: MONAI ``AttentionUnet`` (DiffBoost's downstream net; the code's channels
  (16, 32, 64, 128, 128, 256) with strides 2 at ``base=16``).

Every factory is called as ``factory(in_channels=..., base=..., depth=...)`` (`bench.downstream.SEGMENTERS`) and
returns logits (N, 1, H, W) for images (N, C, H, W) in [0, 1]. ``base`` scales the widths: ``base=64`` is the
standard ResNet-18 (64-128-256-512) and Swin-T (embed 96); smaller values are the mini profile's narrow twins.
No ImageNet weights are loaded (the papers' pretraining is unstated and nothing is downloaded).
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _resnet18_kwargs(base: int) -> dict:
    """timm ResNet-18 widths scaled so that ``base=64`` is the standard network."""
    return {"channels": tuple(base * 2 ** i for i in range(4)), "stem_width": base}


class _Divisible(nn.Module):
    """Checks the input side is divisible by the network's total stride (one clear error instead of a shape clash)."""

    def __init__(self, net: nn.Module, stride: int) -> None:
        super().__init__()
        self.net, self.stride = net, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by {self.stride}")
        return self.net(x)


def upernet(in_channels: int = 3, base: int = 64, depth: int = 4) -> nn.Module:
    """UPerNet on a (width-scaled) ResNet-18, random init; ``depth`` is unused (the encoder has 4 stages + stem)."""
    import segmentation_models_pytorch as smp

    net = smp.UPerNet(encoder_name="tu-resnet18", encoder_weights=None, in_channels=in_channels, classes=1,
                      decoder_channels=max(4 * base, 16), **_resnet18_kwargs(base))
    return _Divisible(net, 32)


def deeplabv3plus(in_channels: int = 3, base: int = 64, depth: int = 4) -> nn.Module:
    """DeepLabV3+ on a (width-scaled) ResNet-18, output stride 16, random init."""
    import segmentation_models_pytorch as smp

    net = smp.DeepLabV3Plus(encoder_name="tu-resnet18", encoder_weights=None, in_channels=in_channels, classes=1,
                            encoder_output_stride=16, decoder_channels=max(4 * base, 16), **_resnet18_kwargs(base))
    return _Divisible(net, 32)


def swin_upernet(in_channels: int = 3, base: int = 64, depth: int = 4) -> nn.Module:
    """UPerNet on Swin-T (depths 2-2-6-2, window 7); embed dim ``1.5 * base`` (96 at ``base=64``), heads per stage
    ``embed/32 * 2**i`` (Swin-T: 3, 6, 12, 24), random init."""
    import segmentation_models_pytorch as smp

    embed = max(int(round(1.5 * base)), 8)
    head0 = max(embed // 32, 1)
    while embed % head0:
        head0 -= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = smp.UPerNet(encoder_name="tu-swin_tiny_patch4_window7_224", encoder_weights=None,
                          in_channels=in_channels, classes=1, decoder_channels=max(4 * base, 16), embed_dim=embed,
                          depths=(2, 2, 6, 2), num_heads=tuple(head0 * 2 ** i for i in range(4)), window_size=7,
                          strict_img_size=False, dynamic_img_size=True)
    return _Divisible(net, 32)


def dynunet(in_channels: int = 3, base: int = 32, depth: int = 4) -> nn.Module:
    """MONAI DynUNet with an nnU-Net-style 2D plan: ``depth`` stride-2 stages, widths ``base * 2**i`` capped at
    ``16 * base`` (nnU-Net 2D: base 32, cap 512), 3x3 kernels, instance norm, no deep supervision."""
    from monai.networks.nets import DynUNet

    kernels = [3] * (depth + 1)
    strides = [1] + [2] * depth
    filters = [min(base * 2 ** i, 16 * base) for i in range(depth + 1)]
    net = DynUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, kernel_size=kernels, strides=strides,
                  upsample_kernel_size=strides[1:], filters=filters, norm_name="instance", res_block=False)
    return _Divisible(net, 2 ** depth)


def monai_attention_unet(in_channels: int = 3, base: int = 16, depth: int = 5) -> nn.Module:
    """MONAI AttentionUnet as DiffBoost's code builds it: channels (b, 2b, 4b, 8b, 8b, 16b) cut to ``depth + 1``
    levels (code: b = 16, 5 stride-2 levels), strides 2, one logit channel (sigmoid) instead of the code's
    two-class softmax (equivalent for a binary target)."""
    from monai.networks.nets import AttentionUnet

    channels = [base, 2 * base, 4 * base, 8 * base, 8 * base, 16 * base][:depth + 1]
    while len(channels) < depth + 1:
        channels.append(channels[-1] * 2)
    net = AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=channels,
                        strides=[2] * depth)
    return _Divisible(net, 2 ** depth)
