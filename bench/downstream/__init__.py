"""Downstream models trained on real + synthetic data: segmenters (and, later, classifiers).

Segmenters are registered by id as ``"module:factory"``; a factory is called as
``factory(in_channels=..., base=..., depth=...)`` and returns an ``nn.Module``
mapping images (N, C, H, W) in [0, 1] to logits (N, 1, H, W). The exception is ``nnunetv2``, whose entry has
``trains_itself = True``: nnU-Net v2 plans, trains and predicts itself (`bench.downstream.nnunet`), and seg-aug runs
it instead of its own trainer (in the paper profile ``nnu-net`` means it; in mini it means the MONAI DynUNet twin).
"""
from bench.registry import Registry

SEGMENTERS: Registry = Registry("segmenter")
SEGMENTERS.register("unet", "bench.downstream.unet:UNet")
SEGMENTERS.register("attention-unet", "bench.downstream.unet:attention_unet")
SEGMENTERS.register("dcsau-net", "bench.downstream.dcsau:dcsau_net")
SEGMENTERS.register("xbound-former", "bench.downstream.xboundformer:xbound_former")
SEGMENTERS.register("xbound-former-pvt", "bench.downstream.xboundformer:xbound_former_pvt")  # paper: ImageNet PVT-v2
SEGMENTERS.register("fat-net", "bench.downstream.fatnet:fat_net")
# MedDiff-FT (A.9) and DiffBoost (B.9) segmenters: segmentation-models-pytorch / timm / MONAI (bench/downstream/smp_models.py)
SEGMENTERS.register("upernet", "bench.downstream.smp_models:upernet")
SEGMENTERS.register("deeplabv3-plus", "bench.downstream.smp_models:deeplabv3plus")
SEGMENTERS.register("swin-transformer", "bench.downstream.smp_models:swin_upernet")
SEGMENTERS.register("nnu-net", "bench.downstream.smp_models:dynunet")  # the nnU-Net twin (MONAI DynUNet)
# nnU-Net v2 itself (the paper profile's ``nnu-net``, seg-aug's task.nnunet): trains and predicts through nnunetv2
SEGMENTERS.register("nnunetv2", "bench.downstream.nnunet:NnUNetV2")
SEGMENTERS.register("monai-attention-unet", "bench.downstream.smp_models:monai_attention_unet")
