"""DiffBoost's text conditioning at sampling (spec B.6, ``segmentation_sample.py``): a weighted sum of text-encoder
state sequences, not a concatenated string,

    c = 0.045 E(prompt + ", best quality, extremely detailed") + 0.005 E(aug[i mod 50]) + 0.95 E("gray, sketch"),

with the unconditional branch E(the code's negative prompt); ``aug`` is the code's 50 augmentation phrases."""
from __future__ import annotations

from typing import Any

import torch

AUG_PHRASES = (
    "Enhance contrast", "High resolution", "Low resolution", "Clear edges", "Blurred edges", "Noise reduction",
    "Sharpened details", "Smoothed texture", "Brightened image", "Darkened image", "High dynamic range",
    "Low dynamic range", "Balanced lighting", "Uniform background", "Grayscale colormap", "Pseudo-coloring",
    "Cropped view", "Zoomed-in detail", "Panoramic view", "Artifact removal", "Image subtraction",
    "Adaptive histogram equalization", "Contrast stretching", "Gamma correction", "Image normalization",
    "Intensity mapping", "Image thresholding", "Edge detection", "Contour extraction", "Morphological operations",
    "Image filtering", "Gaussian blur", "Median filter", "Bilateral filter", "Anisotropic diffusion",
    "Image enhancement", "Inverse transformation", "Image deconvolution", "Motion compensation", "Image compression",
    "Image denoising", "Speckle reduction", "Image inpainting", "Clustering techniques", "Vignetting correction",
    "Lens distortion correction", "Perspective correction", "Reflection removal", "Shadow removal", "Image blending")
QUALITY_SUFFIX = ", best quality, extremely detailed"
SKETCH_PROMPT = "gray, sketch"
NEGATIVE_PROMPT = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, "
                   "worst quality, low quality")
CODE_WEIGHTS = (0.045, 0.005, 0.95)


@torch.no_grad()
def conditioning(parts: Any, prompt: str, aug_index: list[int], mode: str = "code") -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional (N, L, D) and unconditional (1, L, D) text states.

    Args:
        aug_index: per image, the index of its augmentation phrase (cycled over the 50).
        mode: ``code`` (the weighted mix above) or ``prompt`` (the plain prompt; unconditional = "").
    """
    if mode == "prompt":
        return parts.encode_prompt([prompt] * len(aug_index)).float(), parts.encode_prompt([""]).float()
    if mode != "code":
        raise ValueError(f"unknown text mode '{mode}'; valid: code, prompt")
    w_prompt, w_aug, w_sketch = CODE_WEIGHTS
    base = parts.encode_prompt([prompt + QUALITY_SUFFIX, SKETCH_PROMPT]).float()
    augs = parts.encode_prompt([AUG_PHRASES[i % len(AUG_PHRASES)] for i in aug_index]).float()
    cond = w_prompt * base[0:1] + w_aug * augs + w_sketch * base[1:2]
    return cond, parts.encode_prompt([NEGATIVE_PROMPT]).float()
