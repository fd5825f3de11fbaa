"""mini-clip: a small contrastive image-text model (a `transformers.CLIPModel`) trained on the mini worlds.

Its text tower conditions mini-sd (token embeddings, like CLIP ViT-L/14's for Stable Diffusion) and gives
pooled text embeddings for CLIP-T-like scores; its image tower is the encoder of the embedding metrics of
the mini profile (reported as FD-miniCLIP / CLIP-I-mini, never as FID or CLIP-I).

Images: any (N, 1|3, H, W) float tensor in [0, 1]; grayscale is repeated to RGB and every image is resized
(bilinear, antialiased) to the tower's 64x64 input, then mapped to [-1, 1].
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiniClipArch:
    """Architecture of mini-clip (a CLIPModel config)."""

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 96
    vision_layers: int = 3
    text_width: int = 96
    text_layers: int = 3
    heads: int = 4
    projection_dim: int = 96
    max_length: int = 77


def clip_config(arch: MiniClipArch, vocab_size: int, bos_id: int, eos_id: int) -> Any:
    """The `transformers.CLIPConfig` of an architecture."""
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=arch.text_width, intermediate_size=4 * arch.text_width,
                num_hidden_layers=arch.text_layers, num_attention_heads=arch.heads,
                max_position_embeddings=arch.max_length, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id,
                projection_dim=arch.projection_dim)
    vision = dict(hidden_size=arch.vision_width, intermediate_size=4 * arch.vision_width,
                  num_hidden_layers=arch.vision_layers, num_attention_heads=arch.heads, image_size=arch.image_size,
                  patch_size=arch.patch_size, num_channels=3, projection_dim=arch.projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.projection_dim)


class MiniClip:
    """A CLIPModel with its tokenizer and the [0, 1]-image preprocessing of the mini profile.

    Args:
        model: a `transformers.CLIPModel`.
        tokenizer: a `transformers.CLIPTokenizer` (supports ``add_tokens`` for placeholders).
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def preprocess(self, images: Any) -> Any:
        """(N, 1|3, H, W) in [0, 1] -> (N, 3, S, S) in [-1, 1] at the tower's input size S."""
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"mini-clip expects images (N, 1|3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        x = images.float().to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x * 2.0 - 1.0

    def tokenize(self, texts: Sequence[str], pad_to_max: bool = False) -> Any:
        """Token ids (N, L) (L = longest text, or the tokenizer's max length if ``pad_to_max``) and attention mask."""
        return self.tokenizer(list(texts), padding="max_length" if pad_to_max else "longest", truncation=True,
                              max_length=self.tokenizer.model_max_length, return_tensors="pt").to(self.device)

    def image_embeddings(self, images: Any, normalize: bool = True) -> Any:
        """Projected image embeddings (N, d); unit norm if ``normalize``."""
        out = self.model.vision_model(pixel_values=self.preprocess(images))
        emb = self.model.visual_projection(out.pooler_output)
        return emb / emb.norm(dim=-1, keepdim=True) if normalize else emb

    def text_embeddings(self, texts: Sequence[str], normalize: bool = True) -> Any:
        """Projected pooled text embeddings (N, d) (the end-of-text token's state); unit norm if ``normalize``."""
        tokens = self.tokenize(texts)
        out = self.model.text_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        emb = self.model.text_projection(out.pooler_output)
        return emb / emb.norm(dim=-1, keepdim=True) if normalize else emb

    def token_embeddings(self, texts: Sequence[str]) -> Any:
        """Last hidden states of the text tower (N, max_length, width), padded to the max length as in SD."""
        tokens = self.tokenize(texts, pad_to_max=True)
        return self.model.text_model(input_ids=tokens.input_ids).last_hidden_state

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())


def contrastive_loss(image_emb: Any, text_emb: Any, logit_scale: Any, groups: Any | None = None) -> Any:
    """Symmetric InfoNCE over a batch (CLIP). Rows with identical captions (same ``groups`` id) are not negatives.

    Args:
        image_emb, text_emb: (N, d) unit-norm embeddings, row i of each is a pair.
        logit_scale: scalar tensor (already exponentiated).
        groups: optional (N,) int tensor; pairs in the same group count as positives of each other.
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale * image_emb @ text_emb.T
    if groups is None:
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    same = (groups[:, None] == groups[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@dataclass(frozen=True)
class MiniClipRecipe:
    """How mini-clip is trained (``bench foundation train mini-clip``).

    Stage 1 trains on the generic world and derm-mini; stage 2 continues with cxr-mini added. mini-sd's
    frozen text encoder is mini-clip's text tower at the end of stage 1 (recorded in its model card).
    """

    arch: MiniClipArch = field(default_factory=MiniClipArch)
    seed: int = 0
    batch_size: int = 96
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    stage1_steps: int = 200
    stage2_steps: int = 120
    stage1_mix: tuple[tuple[str, float], ...] = (("generic", 0.6), ("derm", 0.4))
    stage2_mix: tuple[tuple[str, float], ...] = (("generic", 0.45), ("derm", 0.25), ("cxr", 0.3))
    generic_world_seed: int = 7
    derm_world_seed: int = 2018
    cxr_world_seed: int = 14
    derm_train_size: int = 1000
    cxr_train_size: int = 2000
    checkpoint_every: int = 25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_mini_clip_from(weights: Path, tokenizer_dir: Path, config: dict[str, Any],
                        dtype: Any = None) -> MiniClip:
    """Build a MiniClip from a safetensors state dict, a tokenizer folder and an architecture dict."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    arch = MiniClipArch(**config["arch"])
    model = CLIPModel(clip_config(arch, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id))
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    if dtype is not None:
        model.to(dtype)
    del torch
    return MiniClip(model, tokenizer)
