"""disendiff: DisenDiff (Zhang et al., CVPR 2024; ``Monalissaa/DisenDiff``) as the chapter-3 baseline (thesis
3.4.1 / 3.6.3, spec ``research/ch3_attencraft.md`` sections 4 and 8.3): Custom Diffusion's K/V + modifier-token
training on the full prompt "a photo of [V1] cat and [V2] dog", plus DisenDiff's attention calibration:

    L = L_diffusion + IoU_alpha * ( sum_k (1 - IoU(A[V_k], A[class_k])) + IoU(A[class_1], A[class_2]) )

where A[w] is word w's cross-attention map at the 16x16 layers (``attn16``: latent / 4), Gaussian-smoothed (kernel
3, sigma 0.5), divided by its max and squared (``self_filter``: the "cross-attention suppression" AttenCraft
borrows), and IoU(a, b) = sum min(a, b) / sum max(a, b) (soft IoU). The first term binds each identifier to its
class word's region; the second (``IoU_between_subject``) pushes the two class regions apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from baselines.custom_diffusion.method import CustomDiffusion, CustomDiffusionConfig
from bench.diffusion.attention import AttentionStore
from bench.diffusion.tokens import token_indices


@dataclass(frozen=True)
class DisenDiffConfig(CustomDiffusionConfig):
    """DisenDiff as the thesis ran it (spec section 4: 250 steps at lr 5e-5; ``configs/full.yaml`` otherwise)."""

    steps: int = 250
    """Training steps per scene (thesis: 250)."""
    iou_alpha: float = 0.01
    """Weight of the attention calibration (``IoU_alpha``)."""
    gaussian_kernel: int = 3
    """Gaussian smoothing of the maps: kernel size (``gaussian``: k = 3); 0 switches smoothing off."""
    gaussian_sigma: float = 0.5
    """Gaussian smoothing sigma (0.5)."""
    self_filter: bool = True
    """Square the max-normalised maps (``self_filter``)."""
    iou_between_subject: bool = True
    """Penalise the overlap of the two class words' maps (``IoU_between_subject``)."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if not self.class_nouns:
            raise ConfigError("disendiff calibrates identifier maps against class-word maps: method.class_nouns "
                              "must be true")
        if self.gaussian_kernel and self.gaussian_kernel % 2 == 0:
            raise ConfigError(f"method.gaussian_kernel must be odd (or 0), got {self.gaussian_kernel}")


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(min(a, b)) / sum(max(a, b)) over the last two dims."""
    return torch.minimum(a, b).sum((-2, -1)) / torch.maximum(a, b).sum((-2, -1)).clamp_min(1e-12)


def calibration_maps(maps: torch.Tensor, kernel: int, sigma: float, square: bool) -> torch.Tensor:
    """(K, h, w) raw maps -> smoothed (torchvision's Gaussian blur), max-normalised, optionally squared."""
    from torchvision.transforms.functional import gaussian_blur

    if kernel:
        maps = gaussian_blur(maps[:, None], [kernel, kernel], [sigma, sigma])[:, 0]
    maps = maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return maps ** 2 if square else maps


def calibration_loss(token_maps: torch.Tensor, class_maps: torch.Tensor, between: bool = True) -> torch.Tensor:
    """sum_k (1 - IoU(token_k, class_k)) (+ IoU(class_1, class_2) for each pair of classes when ``between``)."""
    loss = (1 - soft_iou(token_maps, class_maps)).sum()
    if between:
        for i in range(class_maps.shape[0]):
            for j in range(i + 1, class_maps.shape[0]):
                loss = loss + soft_iou(class_maps[i], class_maps[j])
    return loss


class DisenDiff(CustomDiffusion):
    """DisenDiff (module doc)."""

    Config = DisenDiffConfig
    version: ClassVar[str] = "1"
    label: ClassVar[str] = "disendiff"
    state_file: ClassVar[str] = "disendiff.json"

    def setup_store(self, z0: torch.Tensor) -> Any:
        return AttentionStore(cross=True, resolutions={self.cross_resolution()}, mode="last", keep_grad=True)

    def extra_loss(self, z0: torch.Tensor, tokens: list[str], class_words: list[str], prompt: str
                   ) -> torch.Tensor | None:
        c = self.config
        cross = self.store.maps(self.cross_resolution(), "cross")[0]  # (h, w, 77)
        tok = self.parts.tokenizer
        token_maps = torch.stack([cross[..., token_indices(tok, prompt, t)[0]] for t in tokens])
        # a class word's map: the mean over its pieces (one token for most words)
        class_maps = torch.stack([cross[..., self._word_positions(prompt, t, w)].mean(-1)
                                  for t, w in zip(tokens, class_words)])
        both = calibration_maps(torch.cat([token_maps, class_maps]), c.gaussian_kernel, c.gaussian_sigma,
                                c.self_filter)
        n = len(tokens)
        return c.iou_alpha * calibration_loss(both[:n], both[n:], c.iou_between_subject)

    def _word_positions(self, prompt: str, token: str, word: str) -> list[int]:
        """Positions of the class word that follows ``token`` in the prompt."""
        tok = self.parts.tokenizer
        start = token_indices(tok, prompt, token)[0] + 1
        pieces = len(tok(word, add_special_tokens=False).input_ids)
        return list(range(start, start + pieces))
