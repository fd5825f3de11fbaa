"""Downstream models trained on real + synthetic data: segmenters (and, later, classifiers).

Segmenters are registered by id as ``"module:factory"``; a factory is called as
``factory(in_channels=..., base=..., depth=...)`` and returns an ``nn.Module``
mapping images (N, C, H, W) in [0, 1] to logits (N, 1, H, W).
"""
from bench.registry import Registry

SEGMENTERS: Registry = Registry("segmenter")
SEGMENTERS.register("unet", "bench.downstream.unet:UNet")
SEGMENTERS.register("attention-unet", "bench.downstream.unet:attention_unet")
SEGMENTERS.register("dcsau-net", "bench.downstream.dcsau:dcsau_net")
SEGMENTERS.register("xbound-former", "bench.downstream.xboundformer:xbound_former")
