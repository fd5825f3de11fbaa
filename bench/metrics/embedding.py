"""Embedding similarity metrics of chapter 3 (AttenCraft): CLIP-I, CLIP-T, DINO, CLIP-I-sync.

Definitions (research ch3 section 3):

- CLIP-I: mean cosine similarity between the image embeddings of every
  (generated, reference) pair; the thesis uses CLIP ViT-L/14 and, in the author's
  code, the un-projected ``pooler_output`` (`bench.metrics.extractors.load_clip`
  gives both that and the projected embedding).
- CLIP-T: mean cosine between each generated image's projected embedding and the
  projected embedding of its prompt, with identifier tokens (``[V1]``, ``<new1>``,
  ``sks``...) removed from the prompt first (replaced by a space, as the author's
  code does, or by a class word when given).
- DINO: as CLIP-I with DINOv2 CLS embeddings.
- CLIP-I-sync: ``|CLIP-I(concept 1) - CLIP-I(concept 2)|`` (lower is better).
- Masked variants (not in the thesis; offered for region-level checks): images are
  multiplied by their masks, the background filled with ``fill``, optionally cropped
  to the mask's bounding box, before encoding.

Encoders are any callables: images (N, 3, H, W) in [0, 1] -> (N, d); prompts
list[str] -> (N, d). Keys name the encoder: ``clip_i`` for the thesis' CLIP
ViT-L/14, ``clip_i[<encoder>]`` otherwise (``clip_i[mini-clip]``), and
``[...,masked]`` for masked variants.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)

THESIS_CLIP = "clip-vit-l-14"
THESIS_DINO = "dinov2-base"


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a`` (Na, d) with every row of ``b`` (Nb, d): (Na, Nb) float64."""
    import torch

    a, b = a.double(), b.double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a @ b.T if a.numel() and b.numel() else torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)


def mean_pairwise_cosine(generated: Tensor, reference: Tensor) -> float:
    """Mean cosine over all (generated, reference) pairs: the CLIP-I / DINO score. Range [-1, 1]."""
    if generated.shape[0] == 0 or reference.shape[0] == 0:
        raise ValueError("need at least one generated and one reference embedding")
    return float(cosine_matrix(generated, reference).mean())


def paired_cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine of paired embeddings (N, d) x (N, d) -> (N,) float64."""
    if a.shape != b.shape:
        raise ValueError(f"paired embeddings need equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return cosine_matrix(a, b).diagonal()


def strip_identifiers(prompt: str, identifiers: Sequence[str], replacements: Mapping[str, str] | None = None) -> str:
    """Remove identifier tokens from a prompt before CLIP-T.

    Args:
        prompt: e.g. ``"a photo of [V1] dog"``.
        identifiers: tokens to remove, e.g. ``["[V1]", "<new1>", "sks"]`` (matched as whole tokens).
        replacements: optional token -> class word (for prompts without class nouns).

    Returns:
        The prompt with each identifier replaced by a space (or its class word), spaces collapsed.
    """
    out = prompt
    for ident in identifiers:
        repl = (replacements or {}).get(ident, " ")
        out = re.sub(rf"(?<!\w){re.escape(ident)}(?!\w)", repl, out)
    return re.sub(r"\s+", " ", out).strip()


def masked_images(images: Tensor, masks: Tensor, fill: float = 0.0, crop: bool = False) -> list[Tensor] | Tensor:
    """Keep only the masked region of each image.

    Args:
        images: (N, 3, H, W) in [0, 1].
        masks: bool (N, H, W).
        fill: background value (0 black, 1 white, 0.5 grey).
        crop: also crop each image to its mask's bounding box (then a list of tensors
            of different sizes is returned; encoders resize them).

    Returns:
        (N, 3, H, W) tensor, or a list of (3, h, w) tensors when ``crop``.
    """
    m = masks.bool().unsqueeze(1)
    if m.shape[0] != images.shape[0] or m.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
    out = images * m + fill * (~m)
    if not crop:
        return out
    crops = []
    for img, mask in zip(out, masks.bool()):
        if not mask.any():
            raise ValueError("cannot crop to an empty mask")
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        crops.append(img[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    return crops


def embedding_key(metric: str, encoder_name: str, masked: bool = False, paired: bool = False) -> str:
    """``clip_i`` / ``clip_i[mini-clip]`` / ``clip_i[masked]`` / ``dino[dino-vitb16,masked]`` / ``dino[paired]``..."""
    default = THESIS_DINO if metric == "dino" else THESIS_CLIP
    tags = ([] if encoder_name == default else [encoder_name]) + (["masked"] if masked else []) + (["paired"] if paired else [])
    return f"{metric}[{','.join(tags)}]" if tags else metric


def _encode(encoder: Callable[[Any], Tensor], images: Tensor | list[Tensor], batch_size: int) -> Tensor:
    import torch

    with torch.no_grad():
        if isinstance(images, list):
            return torch.cat([encoder(img.unsqueeze(0)) for img in images])
        return torch.cat([encoder(images[s : s + batch_size]) for s in range(0, images.shape[0], batch_size)])


class EmbeddingScorer:
    """CLIP-I / CLIP-T / DINO with any image (and text) encoder.

    Args:
        image_encoder: images (N, 3, H, W) in [0, 1] -> (N, d).
        encoder_name: label used in the keys (``"clip-vit-l-14"`` gives plain ``clip_i``).
        text_encoder: prompts -> (N, d) in the same space as ``image_encoder``'s
            output, for CLIP-T (pass the *projected* image encoder then).
        metric: ``"clip_i"`` or ``"dino"`` for the image-image score name.
    """

    higher_is_better = True
    display_name = "Embedding similarity"
    lower_bound = -1.0
    upper_bound = 1.0

    def __init__(self, image_encoder: Callable[[Any], Tensor], encoder_name: str, text_encoder: Callable[[list[str]], Tensor] | None = None,
                 metric: str = "clip_i", batch_size: int = 16) -> None:
        if metric not in ("clip_i", "dino"):
            raise ValueError(f"metric must be 'clip_i' or 'dino', got {metric!r}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.encoder_name = encoder_name
        self.metric = metric
        self.batch_size = batch_size

    def image_similarity(self, generated: Tensor, references: Tensor, generated_masks: Tensor | None = None,
                         reference_masks: Tensor | None = None, fill: float = 0.0, crop: bool = False,
                         paired: bool = False) -> dict[str, float]:
        """CLIP-I (or DINO) of generated vs reference images; masked if masks are given (both or neither).

        ``paired=False`` (chapter 3): mean over all (generated, reference) pairs.
        ``paired=True`` (chapter 5 Table 5.2, each generated image vs its own style
        reference): mean of row-wise cosines, key tagged ``[paired]``.
        """
        masked = generated_masks is not None or reference_masks is not None
        if masked and (generated_masks is None or reference_masks is None):
            raise ValueError("pass masks for both generated and reference images, or for neither")
        gen: Any = masked_images(generated, generated_masks, fill, crop) if masked else generated
        ref: Any = masked_images(references, reference_masks, fill, crop) if masked else references
        gen_emb, ref_emb = _encode(self.image_encoder, gen, self.batch_size), _encode(self.image_encoder, ref, self.batch_size)
        value = float(paired_cosine(gen_emb, ref_emb).mean()) if paired else mean_pairwise_cosine(gen_emb, ref_emb)
        return {embedding_key(self.metric, self.encoder_name, masked, paired): value}

    def text_similarity(self, generated: Tensor, prompts: Sequence[str], identifiers: Sequence[str] = (),
                        replacements: Mapping[str, str] | None = None) -> dict[str, float]:
        """CLIP-T: mean cosine of each image with its own prompt (identifiers stripped)."""
        import torch

        if self.text_encoder is None:
            raise ValueError("CLIP-T needs a text_encoder")
        if len(prompts) != generated.shape[0]:
            raise ValueError(f"{generated.shape[0]} images but {len(prompts)} prompts")
        clean = [strip_identifiers(p, identifiers, replacements) for p in prompts]
        with torch.no_grad():
            text = self.text_encoder(clean)
        image = _encode(self.image_encoder, generated, self.batch_size)
        return {embedding_key("clip_t", self.encoder_name): float(paired_cosine(image, text).mean())}


def clip_i_sync(clip_i_concept1: float, clip_i_concept2: float) -> float:
    """Learning synchronicity ``|CLIP-I(concept 1) - CLIP-I(concept 2)|`` (lower is better)."""
    return abs(float(clip_i_concept1) - float(clip_i_concept2))
