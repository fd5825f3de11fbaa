"""Scores of the concept task (thesis chapter 3, spec ``research/ch3_attencraft.md`` section 3, and beyond it).

Thesis metrics, built on `bench.metrics.embedding` (cosines, identifier stripping):

* CLIP-I: mean cosine over all (generated, reference) pairs of CLIP image embeddings, the un-projected
  ``pooler_output`` by default (the author's code), the projected ``image_embeds`` as an option;
* CLIP-T: mean cosine of each generated image's projected embedding with its prompt's, identifiers replaced by
  their class words (or stripped, the author's code) first (`clip_t_text`);
* DINO: as CLIP-I with DINOv2 (``dinov2-base``, default) or DINO v1 (``dino-vitb16``) CLS embeddings; in the mini
  profile the stand-in ``mini-clip-patches`` (the mean of mini-clip's vision patch tokens, not its CLS token that
  CLIP-I uses; keys ``dino[mini-clip-patches,...]``): there is no self-supervised mini encoder, so it is a second
  view of the same tower, not a DINO measurement;
* CLIP-I-sync: ``|CLIP-I(concept 1) - CLIP-I(concept 2)|`` within a scene.

Beyond the thesis, with concept-mini's ground truth (the world's own attributes and object masks):

* `colour_coverage`: the share of an image the largest connected region of one of a concept's distinctive colours
  covers; the task counts a concept as present when that share reaches half (``task.presence_min_share``) the share
  it has in the task's own references of the same kind (its
  reference views alone, the input image for the group), which scores presence (concept i in a ``[V_i]`` image)
  and leakage (concept j in a ``[V_i]``-only image);
* `mask_iou`: IoU of a method's learned attention masks with the true object masks.

`ConceptEncoders` names the encoders; metric keys name them when they are not the thesis' (``clip_i[mini-clip,
single]``), via `bench.tasks.common.metric_key`-style brackets.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.metrics.embedding import THESIS_CLIP, THESIS_DINO, _encode, mean_pairwise_cosine, paired_cosine

DINO_V1_DIR = "dino-vitb16"


def clip_t_text(prompt: str, placeholders: Sequence[str], class_words: Sequence[str], mode: str = "class") -> str:
    """The text CLIP-T compares an image with.

    ``mode="class"``: each placeholder becomes its class word; a placeholder already followed by its class word
    (``"<new1> cat"``) becomes that word once. ``mode="strip"``: placeholders are removed (the author's code).
    """
    if mode not in ("class", "strip"):
        raise ValueError(f"clip_t identifiers mode must be 'class' or 'strip', got {mode!r}")
    out = prompt
    for token, word in zip(placeholders, class_words):
        if mode == "class":
            out = re.sub(rf"(?<!\w){re.escape(token)}(\s+{re.escape(word)}\b)?", word, out)
        else:
            out = re.sub(rf"(?<!\w){re.escape(token)}", " ", out)
    return re.sub(r"\s+", " ", out).strip()


@dataclass
class ConceptEncoders:
    """Encoders of the concept scores: images (N, 3, H, W) in [0, 1] -> (N, d); texts -> (N, d).

    Attributes:
        clip_image: image embedding of CLIP-I (pooler_output or projected).
        clip_projected: projected image embedding (CLIP-T pairs it with ``clip_text``).
        clip_text: projected text embedding.
        clip_tag: key tag of the CLIP scores ("" for the thesis' CLIP ViT-L/14 pooler_output).
        dino: DINO image embedding or None (no DINO score).
        dino_tag: key tag of DINO ("" for dinov2-base).
    """

    clip_image: Callable[[torch.Tensor], torch.Tensor]
    clip_projected: Callable[[torch.Tensor], torch.Tensor]
    clip_text: Callable[[list[str]], torch.Tensor]
    clip_tag: str = ""
    dino: Callable[[torch.Tensor], torch.Tensor] | None = None
    dino_tag: str = ""


def mini_clip_patch_embedding() -> Callable[[torch.Tensor], torch.Tensor]:
    """The mini profile's DINO stand-in: mean of mini-clip's last-layer vision patch tokens (CLS excluded)."""
    from bench.diffusion.models import load_mini_clip

    clip = load_mini_clip()

    def patches(x: torch.Tensor) -> torch.Tensor:
        hidden = clip.model.vision_model(pixel_values=clip.preprocess(x)).last_hidden_state
        return hidden[:, 1:].mean(1).float()

    return patches


def _mini_clip_towers() -> tuple[Any, Any, Any]:
    from bench.diffusion.models import load_mini_clip

    clip = load_mini_clip()

    def pooled(x: torch.Tensor) -> torch.Tensor:
        return clip.model.vision_model(pixel_values=clip.preprocess(x)).pooler_output.float()

    def projected(x: torch.Tensor) -> torch.Tensor:
        return clip.image_embeddings(x, normalize=False).float()

    def text(prompts: list[str]) -> torch.Tensor:
        return clip.text_embeddings(prompts, normalize=False).float()

    return pooled, projected, text


def load_dino_v1(folder: str | Path | None = None, weights_dir: str | Path | None = None) -> torch.nn.Module:
    """DINO v1 ViT-B/16 (facebook/dino-vitb16, a ``save_pretrained`` ViTModel folder): [0, 1] images -> CLS token of
    the last hidden state (DreamBooth's DINO metric), after resize 256 / centre crop 224 / ImageNet normalisation."""
    from transformers import ViTModel

    from bench.metrics.extractors import IMAGENET_MEAN, IMAGENET_STD, _normalizer, _require, _to_rgb, \
        resize_center_crop, resolve_weights_dir

    if folder is None:
        folder = resolve_weights_dir(weights_dir) / DINO_V1_DIR
    folder = _require(Path(folder), "DINO v1 folder (facebook/dino-vitb16, written by save_pretrained)")
    model = ViTModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False).eval()
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD)
    size = int(model.config.image_size)

    class _DinoV1(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pixels = norm(resize_center_crop(_to_rgb(x).float(), round(size * 256 / 224), size))
            return self.model(pixel_values=pixels).last_hidden_state[:, 0]

    return _DinoV1().eval()


def load_concept_encoders(clip: str = THESIS_CLIP, clip_image: str = "pooler", dino: str | None = THESIS_DINO,
                          weights_dir: str | Path | None = None) -> ConceptEncoders:
    """Encoders by name: ``clip`` in {clip-vit-l-14, clip-vit-b-32, mini-clip}, ``clip_image`` in {pooler,
    projected}, ``dino`` in {dinov2-base, dino-vitb16, None}. Weights come from ``weights_dir`` (or
    ``$BENCH_WEIGHTS``); mini-clip ships with the package. Nothing is downloaded."""
    from bench.metrics.extractors import load_clip, load_dinov2

    if clip_image not in ("pooler", "projected"):
        raise ValueError(f"clip_image must be 'pooler' or 'projected', got {clip_image!r}")
    if clip == "mini-clip":
        pooled, projected, text = _mini_clip_towers()
    else:
        towers = load_clip(weights_dir=weights_dir, variant=clip)
        pooled, projected, text = towers["image"], towers["image_projected"], towers["text"]
    tags = ([] if clip == THESIS_CLIP else [clip]) + (["projected"] if clip_image == "projected" else [])
    dino_model = None
    if dino == "dinov2-base":
        dino_model = load_dinov2(weights_dir=weights_dir)
    elif dino == "dino-vitb16":
        dino_model = load_dino_v1(weights_dir=weights_dir)
    elif dino == "mini-clip-patches":
        dino_model = mini_clip_patch_embedding()
    elif dino is not None:
        raise ValueError(f"unknown DINO encoder {dino!r}; valid: dinov2-base, dino-vitb16, mini-clip-patches, none")
    return ConceptEncoders(clip_image=pooled if clip_image == "pooler" else projected, clip_projected=projected,
                           clip_text=text, clip_tag=",".join(tags), dino=dino_model,
                           dino_tag="" if dino in (None, THESIS_DINO) else str(dino))


def concept_key(metric: str, tag: str, group: str | None = None) -> str:
    """``clip_i[single]``, ``clip_i[mini-clip,group]``, ``clip_i_sync[mini-clip]``..."""
    parts = [p for p in (tag, group) if p]
    return f"{metric}[{','.join(parts)}]" if parts else metric


def image_scores(encoders: ConceptEncoders, generated: torch.Tensor, references: torch.Tensor,
                 batch_size: int = 16) -> dict[str, float]:
    """CLIP-I (and DINO) of generated vs reference images, mean over all pairs; keys ``clip_i`` / ``dino``."""
    out = {"clip_i": mean_pairwise_cosine(_encode(encoders.clip_image, generated, batch_size),
                                          _encode(encoders.clip_image, references, batch_size))}
    if encoders.dino is not None:
        out["dino"] = mean_pairwise_cosine(_encode(encoders.dino, generated, batch_size),
                                           _encode(encoders.dino, references, batch_size))
    return out


def text_score(encoders: ConceptEncoders, generated: torch.Tensor, texts: Sequence[str], batch_size: int = 16) -> float:
    """CLIP-T: mean cosine of each image's projected embedding with its own text's."""
    if len(texts) != generated.shape[0]:
        raise ValueError(f"{generated.shape[0]} images but {len(texts)} texts")
    with torch.no_grad():
        text = torch.cat([encoders.clip_text(list(texts[s:s + batch_size])) for s in range(0, len(texts), batch_size)])
    image = _encode(encoders.clip_projected, generated, batch_size)
    return float(paired_cosine(image, text).mean())


def scene_scores(encoders: ConceptEncoders, generated: Mapping[str, torch.Tensor], texts: Mapping[str, Sequence[str]],
                 references: Mapping[str, torch.Tensor], batch_size: int = 16) -> dict[str, float]:
    """Thesis scores of one scene (spec section 2.3).

    Args:
        generated / texts / references: per prompt kind (``subject1``, ``subject2``, ..., ``global``): the images
            generated from that kind's prompts, their CLIP-T texts, and the kind's reference images (a concept's
            references for ``subject<k>``, the input image for ``global``).

    Returns:
        ``clip_i[<tag>,single]`` (mean over the concepts), ``clip_t[...]``, ``dino[...]``, the same with ``group``,
        ``clip_i_sync[<tag>]`` (``|CLIP-I(concept 1) - CLIP-I(concept 2)|``, first two concepts) and the per-concept
        ``clip_i[<tag>,subject<k>]``.
    """
    per_kind: dict[str, dict[str, float]] = {}
    for kind, images in generated.items():
        scores = image_scores(encoders, images, references[kind], batch_size)
        scores["clip_t"] = text_score(encoders, images, texts[kind], batch_size)
        per_kind[kind] = scores
    subjects = sorted(k for k in per_kind if k.startswith("subject"))
    out: dict[str, float] = {}
    for metric, tag in (("clip_i", encoders.clip_tag), ("clip_t", encoders.clip_tag), ("dino", encoders.dino_tag)):
        if metric == "dino" and encoders.dino is None:
            continue
        if subjects:
            out[concept_key(metric, tag, "single")] = sum(per_kind[k][metric] for k in subjects) / len(subjects)
        if "global" in per_kind:
            out[concept_key(metric, tag, "group")] = per_kind["global"][metric]
    for k in subjects:
        out[concept_key("clip_i", encoders.clip_tag, k)] = per_kind[k]["clip_i"]
    if len(subjects) >= 2:
        out[concept_key("clip_i_sync", encoders.clip_tag)] = abs(per_kind[subjects[0]]["clip_i"]
                                                                 - per_kind[subjects[1]]["clip_i"])
    return out


# --------------------------------------------------------------------------- ground-truth scores (concept-mini)
def distinctive_colours(identity: Mapping[str, Any], others: Sequence[Mapping[str, Any]], min_distance: float = 0.25
                        ) -> list[torch.Tensor]:
    """Colours (main, accent) of a concept that no other concept in ``others`` has within ``min_distance`` (RGB) and
    that are at least ``min_distance`` from the grey axis (backgrounds are greyish: white, brown would match them)."""
    own = [torch.as_tensor(identity[k], dtype=torch.float32) for k in ("main", "accent")]
    theirs = [torch.as_tensor(o[k], dtype=torch.float32) for o in others for k in ("main", "accent")]
    return [c for c in own if float((c - c.mean()).norm()) >= min_distance
            and all(float((c - t).norm()) >= min_distance for t in theirs)]


def colour_coverage(images: torch.Tensor, colours: Sequence[torch.Tensor], tolerance: float = 0.2) -> torch.Tensor:
    """Per image (N,): the largest share of its pixels that one 4-connected region within ``tolerance`` (RGB
    Euclidean distance) of one colour of ``colours`` covers: an object's part, not scattered pixels (colour-matched
    noise has the right colours everywhere and no region). No colour: all 0."""
    from scipy import ndimage

    n = images.shape[0]
    pixels = images.float().permute(0, 2, 3, 1)  # (N, H, W, 3)
    area = pixels.shape[1] * pixels.shape[2]
    best = torch.zeros(n)
    for colour in colours:
        near = ((pixels - colour.to(pixels)).norm(dim=-1) <= tolerance).numpy()
        for i in range(n):
            labels, count = ndimage.label(near[i])
            if count:
                best[i] = max(float(best[i]), float(np.bincount(labels.ravel())[1:].max()) / area)
    return best


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """IoU per concept of predicted masks (K, h, w) with true masks (K, H, W), both bool; the true masks are
    area-resized to (h, w) and binarised at half coverage. An empty union counts as IoU 1."""
    import torch.nn.functional as F

    if predicted.shape[0] != truth.shape[0]:
        raise ValueError(f"{predicted.shape[0]} predicted masks for {truth.shape[0]} true masks")
    size = predicted.shape[-2:]
    true = F.interpolate(truth[:, None].float(), size=tuple(size), mode="area")[:, 0] >= 0.5 \
        if truth.shape[-2:] != size else truth.bool()
    pred = predicted.bool()
    inter = (pred & true).flatten(1).sum(1).float()
    union = (pred | true).flatten(1).sum(1).float()
    return [float(i / u) if u > 0 else 1.0 for i, u in zip(inter, union)]
