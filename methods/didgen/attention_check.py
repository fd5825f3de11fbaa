"""Does region-aware fine-tuning localise ``<lesion>``, and do guided masks follow their conditions? (mini-sd)

Two measurements behind thesis sections 4.3.3-4.3.4 (the thesis shows the first only qualitatively, Fig. 4.7a):

1. *Lesion attention IoU*: DiDGen is fine-tuned twice from the same seed, with L_attn (``attn_weight``) and
   without it (0). On held-out derm-mini images noised to ``t``, the cross-attention map of ``<lesion>`` at
   ``ca_res`` is min-max normalised, binarised by Otsu and compared with the mask (IoU).
2. *Condition IoU*: the fine-tuned model generates pairs for held-out masks with layout guidance (L_CA + L_SA) and
   without; the IoU of each read-out mask with its conditioning mask (thesis: 0.67 +- 0.21 on SD 2.1).

Run (mini profile config: mini-sd, 200 steps; about 5 minutes on one idle core)::

    python -m methods.didgen.attention_check --steps 200 --n-train 200 --n-heldout 32 --n-masks 16
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bench.interface import Condition, RunContext, Sample


def lesion_attention_iou(model: Any, samples: Sequence[Sample], ca_res: int, t: int = 300, seed: int = 5) -> list[float]:
    """Per held-out sample: IoU of Otsu(minmax(CA map of ``<lesion>``)) with its mask, at timestep ``t``.

    ``model`` is a fitted `methods.didgen.DiDGen`; images are noised with a fixed generator (``seed``) so two
    models are compared on identical inputs.
    """
    from skimage.filters import threshold_otsu

    from bench.diffusion.attention import AttentionStore, storing_processors
    from bench.tasks.common import resize_image, resize_mask

    from .prompts import PREFIX, placeholder_positions
    from .train import minmax_maps

    parts = model.parts
    store = AttentionStore(cross=True, resolutions={ca_res}, mode="last")
    parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
    res = model.config.resolution
    images = torch.stack([resize_image(s.image, res) for s in samples])
    masks = torch.stack([resize_mask(s.mask, ca_res) for s in samples])
    ids = parts.token_ids([PREFIX])[0].tolist()
    lesion = placeholder_positions(ids, model.placeholder_ids)[0]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x0 = parts.codec.encode(images)
        steps = torch.full((len(samples),), t)
        xt = parts.scheduler.add_noise(x0, torch.randn(x0.shape, generator=gen), steps)
        cond = parts.encode_prompt([PREFIX] * len(samples))
        store.begin_step(t)
        parts.unet(xt, steps, encoder_hidden_states=cond)
        maps = minmax_maps(store.maps(ca_res, "cross")[..., lesion]).numpy()
    store.reset()
    out = []
    for m, target in zip(maps, masks.numpy()):
        pred = m > threshold_otsu(m) if np.ptp(m) > 0 else np.zeros_like(target)
        out.append(float((pred & target).sum() / max((pred | target).sum(), 1)))
    return out


def condition_ious(model: Any, masks: Sequence[torch.Tensor], seed: int = 0, **overrides: Any) -> list[float]:
    """IoU of each generated pair's read-out mask with its conditioning mask (config ``overrides`` for sampling)."""
    saved = model.config
    model.config = dataclasses.replace(saved, **overrides)
    try:
        conds = [Condition(mask=m, meta={"index": i}) for i, m in enumerate(masks)]
        return [s.meta["condition_iou"] for s in model.generate(conds, RunContext(seed=seed))]
    finally:
        model.config = saved


def run(steps: int = 200, n_train: int = 200, n_heldout: int = 32, n_masks: int = 16, seed: int = 0,
        attn_weight: float = 0.1) -> dict[str, Any]:
    """Both measurements with the mini profile's DiDGen config (``steps`` and ``attn_weight`` overridable)."""
    from bench.data.derm_mini import DermMini
    from bench.runner import RunConfig, resolve

    from .method import DiDGen

    base = resolve(RunConfig(task="seg-aug", method="didgen", profile="mini")).method_config
    base = dataclasses.replace(base, steps=steps)
    world = DermMini(image_size=64, sizes={"train": n_train, "val": max(n_masks, 1), "test": n_heldout})
    train, val, held = list(world.load("train")), list(world.load("val")), list(world.load("test"))
    result: dict[str, Any] = {"steps": steps, "n_train": n_train, "n_heldout": n_heldout, "seed": seed}
    models = {}
    for name, weight in (("with_attn_loss", attn_weight), ("without_attn_loss", 0.0)):
        model = DiDGen(dataclasses.replace(base, attn_weight=weight))
        model.fit(train, RunContext(seed=seed))
        ious = lesion_attention_iou(model, held, base.ca_res)
        result[f"lesion_iou_{name}"] = (float(np.mean(ious)), float(np.std(ious)))
        models[name] = model
    tuned = models["with_attn_loss"]
    masks = [s.mask for s in val[:n_masks]]
    for name, kw in (("guided", {}), ("unguided", {"ca_guidance": False, "sa_guidance": False})):
        ious = condition_ious(tuned, masks, seed, **kw)
        result[f"condition_iou_{name}"] = (float(np.mean(ious)), float(np.std(ious)))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-heldout", type=int, default=32)
    parser.add_argument("--n-masks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args.steps, args.n_train, args.n_heldout, args.n_masks, args.seed), indent=1))


if __name__ == "__main__":
    main()
