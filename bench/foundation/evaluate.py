"""The quality figures of the foundation models (``bench foundation eval NAME``).

mini-clip:
    zero-shot retrieval on held-out generic-world scenes (every test scene holds a colour-shape pairing never
    seen in training): for each image, rank the distinct captions of the test scenes; top-1 / top-5 accuracy
    against chance = 1 / number of candidates. Also cxr-mini report retrieval on test scenes (stage 2): exact
    report top-1, and label match (the retrieved report has the image's set of positive findings) against the
    rate of a uniformly random candidate.
mini-sd:
    * noun-word localisation: on held-out two-object scenes, noise the real image to timestep ``t``, run the
      UNet with the caption, average the 16x16 cross-attention maps, min-max normalise the map of a word,
      threshold it at 0.5, upsample to the image and compute IoU with the object's true mask. Reported for
      the object's shape (noun) word and colour word, and for the control: the *other* object's noun word
      against this object's mask.
    * attribute accuracy: images generated for held-out caption combinations are classified by mini-clip
      among captions that differ only in one object's colour (or shape); chance = 1/6. The same score on the
      real held-out images is the ceiling.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _generic_images(split: str, indices: range, size: int = 32, n_objects: int | None = None) -> tuple[Any, list]:
    import torch

    from bench.data.generic_world import render_scene

    scenes = [render_scene(7, split, i, size, n_objects=n_objects) for i in indices]
    images = torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2)
    return images, scenes


def eval_mini_clip(clip: Any, n: int = 500, n_cxr: int = 200, batch: int = 100) -> dict[str, float]:
    """Zero-shot retrieval figures of mini-clip (see module doc)."""
    import torch

    images, scenes = _generic_images("test", range(n))
    captions = [s[2] for s in scenes]
    candidates = sorted(set(captions))
    with torch.no_grad():
        img = torch.cat([clip.image_embeddings(images[i:i + batch]) for i in range(0, n, batch)])
        txt = torch.cat([clip.text_embeddings(candidates[i:i + batch]) for i in range(0, len(candidates), batch)])
    truth = torch.tensor([candidates.index(c) for c in captions])
    ranks = (img @ txt.T).argsort(dim=1, descending=True)
    out = {"generic_heldout_top1": float((ranks[:, 0] == truth).float().mean()),
           "generic_heldout_top5": float((ranks[:, :5] == truth[:, None]).any(1).float().mean()),
           "generic_heldout_chance": 1.0 / len(candidates), "generic_heldout_candidates": float(len(candidates))}
    if n_cxr:
        from bench.data.cxr_mini import CxrMini

        samples = CxrMini(sizes={"test": n_cxr}).load("test")
        items = [samples[i] for i in range(n_cxr)]
        reports = [s.report for s in items]
        unique = sorted(set(reports))
        with torch.no_grad():
            img = clip.image_embeddings(torch.stack([s.image for s in items]))
            txt = torch.cat([clip.text_embeddings(unique[i:i + batch]) for i in range(0, len(unique), batch)])
        truth = torch.tensor([unique.index(r) for r in reports])
        top1 = (img @ txt.T).argmax(1)
        # Label agreement: does the retrieved report carry the same positive CheXpert findings as the image?
        findings = {r: frozenset(s.meta["positive"]) for r, s in zip(reports, items)}
        same = [float(findings[unique[int(k)]] == frozenset(s.meta["positive"])) for k, s in zip(top1, items)]
        chance_same = float(np.mean([[float(findings[u] == frozenset(s.meta["positive"])) for u in unique]
                                     for s in items]))
        out.update(cxr_report_top1=float((top1 == truth).float().mean()), cxr_report_chance=1.0 / len(unique),
                   cxr_label_match_top1=float(np.mean(same)), cxr_label_match_chance=chance_same)
    return out


def attention_iou(parts: Any, n_scenes: int = 100, timestep: int = 300, threshold: float = 0.5, res: int = 16,
                  seed: int = 0, batch: int = 25) -> dict[str, float]:
    """Noun-word / colour-word / control IoU of thresholded cross-attention maps on held-out scenes."""
    import torch
    import torch.nn.functional as F

    from bench.data.generic_world import word_positions
    from bench.diffusion.attention import AttentionStore, storing_processors

    store = AttentionStore(cross=True, resolutions={res}, mode="average")
    old = parts.unet.attn_processors
    parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
    images, scenes = _generic_images("test", range(n_scenes), parts.unet.config.sample_size, n_objects=2)
    scores: dict[str, list[float]] = {"noun": [], "colour": [], "control_noun": []}
    gen = torch.Generator().manual_seed(seed)
    alphas = parts.scheduler.alphas_cumprod
    try:
        for start in range(0, n_scenes, batch):
            x0 = parts.codec.encode(images[start:start + batch])
            chunk = scenes[start:start + batch]
            a = alphas[timestep]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
            store.reset()
            with torch.no_grad():
                cond = parts.encode_prompt([s[2] for s in chunk])
                parts.unet(xt, torch.full((len(chunk),), timestep), encoder_hidden_states=cond)
            maps = store.maps(res)  # (B, res, res, L)
            size = x0.shape[-1]
            for b, (_, objects, _) in enumerate(chunk):
                pos = word_positions(objects)
                masks = [torch.from_numpy(o.mask) for o in objects]

                def binary(token: int) -> Any:
                    m = maps[b, :, :, token]
                    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-8)
                    up = F.interpolate(m[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
                    return up > threshold

                def iou(pred: Any, mask: Any) -> float:
                    return float((pred & mask).sum() / (pred | mask).sum().clamp_min(1))

                for k in range(2):
                    scores["noun"].append(iou(binary(pos[k]["shape"] + 1), masks[k]))
                    scores["colour"].append(iou(binary(pos[k]["colour"] + 1), masks[k]))
                    scores["control_noun"].append(iou(binary(pos[1 - k]["shape"] + 1), masks[k]))
    finally:
        parts.unet.set_attn_processor(old)
    return {f"iou_{k}": float(np.mean(v)) for k, v in scores.items()} | {"iou_timestep": float(timestep),
                                                                        "iou_scenes": float(n_scenes)}


def _variant_captions(objects: list[Any], k: int, attribute: str) -> tuple[list[str], int]:
    """Captions differing from the scene's only in object ``k``'s ``attribute``; index of the true one."""
    from dataclasses import replace

    from bench.data.generic_world import COLOURS, SHAPES, caption_of

    values = list(COLOURS) if attribute == "colour" else list(SHAPES)
    out = []
    for v in values:
        changed = list(objects)
        changed[k] = replace(objects[k], **{attribute: v})
        out.append(caption_of(changed))
    return out, values.index(getattr(objects[k], attribute))


def attribute_accuracy(clip: Any, images: Any, scenes: list) -> dict[str, float]:
    """mini-clip's accuracy at naming each object's colour and shape in ``images`` among 6 variants each."""
    import torch

    hits: dict[str, list[float]] = {"colour": [], "shape": []}
    with torch.no_grad():
        img = clip.image_embeddings(images)
        for b, (_, objects, _) in enumerate(scenes):
            for k in range(len(objects)):
                for attribute in ("colour", "shape"):
                    captions, truth = _variant_captions(objects, k, attribute)
                    scores = clip.text_embeddings(captions) @ img[b]
                    hits[attribute].append(float(int(scores.argmax()) == truth))
    return {f"{a}_accuracy": float(np.mean(v)) for a, v in hits.items()}


def generation_accuracy(parts: Any, clip: Any, n_prompts: int = 32, steps: int = 25, guidance_scale: float = 5.0,
                        seed: int = 0, batch: int = 16) -> dict[str, float]:
    """Attribute accuracy of images generated for held-out caption combinations, and of the real ones."""
    import torch

    from bench.diffusion.attention import classic_processors
    from bench.diffusion.sampling import make_scheduler, sample

    images, scenes = _generic_images("test", range(n_prompts), parts.unet.config.sample_size)
    old = parts.unet.attn_processors
    parts.unet.set_attn_processor(classic_processors(parts.unet))
    generated = []
    try:
        for start in range(0, n_prompts, batch):
            chunk = scenes[start:start + batch]
            with torch.no_grad():
                cond = parts.encode_prompt([s[2] for s in chunk])
                uncond = parts.encode_prompt([""])
            gen = torch.Generator().manual_seed(seed + start)
            generated.append(sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=steps,
                                    guidance_scale=guidance_scale, uncond=uncond, generator=gen))
    finally:
        parts.unet.set_attn_processor(old)
    fake = torch.cat(generated)
    out = {f"generated_{k}": v for k, v in attribute_accuracy(clip, fake, scenes).items()}
    out |= {f"real_{k}": v for k, v in attribute_accuracy(clip, images, scenes).items()}
    out |= {"attribute_chance": 1.0 / 6, "generated_prompts": float(n_prompts), "sampling_steps": float(steps),
            "guidance_scale": guidance_scale}
    return out


def eval_mini_sd(parts: Any, clip: Any, quick: bool = False) -> dict[str, float]:
    """All mini-sd figures (``quick`` uses fewer scenes and prompts)."""
    out = attention_iou(parts, n_scenes=40 if quick else 100)
    out |= generation_accuracy(parts, clip, n_prompts=16 if quick else 32)
    return out
