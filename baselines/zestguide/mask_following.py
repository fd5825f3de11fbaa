"""How much the training-free layout guidance of ZestGuide / Attn-Refocus makes mini-sd samples follow their masks.

Both run on DiDGen's fine-tuned UNet; the same noise is sampled with the guidance step on (the method's mini config)
and off (step size 0), and each image is scored by its lesion darkness (mean luminance outside the condition mask
minus inside, `bench.diffusion.mask_following.lesion_darkness`; real derm-mini pairs are positive).

Reproduce the READMEs' numbers (DiDGen mini fit on the 200 seg-aug mini training pairs, then 16 validation masks)::

    python -m baselines.zestguide.mask_following --state runs/didgen-mini      # both baselines
    python -m baselines.zestguide.mask_following --state runs/didgen-mini --method attn-refocus

An existing ``--state`` folder (a DiDGen fit state, e.g. ``<work-dir>/fit/<key>/state`` of a ``bench run``) is reused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: method id -> (config option that sets the guidance step size, module path of the method)
GUIDED = {"zestguide": ("zest_lr", "baselines.zestguide"), "attn-refocus": ("refocus_eta", "baselines.attn_refocus")}


def _mini_config(method_id: str, **overrides: Any) -> Any:
    """The method's mini-profile config (its ``config.yaml``), with ``overrides``."""
    from bench import config as cfg
    from bench.registry import METHODS
    from bench.runner import method_config_file

    cls = METHODS.get(method_id)
    return cfg.build(cls.Config, {**cfg.profile_section(method_config_file(cls), "mini"), **overrides}, "method")


def compare(state: Path, method_id: str, n_train: int = 200, n_masks: int = 16, seed: int = 1) -> dict[str, float]:
    """Fit DiDGen (unless ``state`` holds a fit), then score guided vs unguided samples of ``method_id``.

    Returns:
        mean lesion darkness of the real pairs, the guided and the unguided samples, and how many masks the
        guidance made darker inside.
    """
    from bench.data.derm_mini import DermMini
    from bench.interface import Condition, RunContext
    from bench.registry import METHODS
    from bench.tasks.common import resize_image, resize_mask

    from bench.diffusion.mask_following import lesion_darkness

    data = DermMini(image_size=64, sizes={"train": n_train, "val": n_masks, "test": 1})
    if not (state / "unet.safetensors").is_file():
        didgen = METHODS.get("didgen")(_mini_config("didgen"))
        didgen.fit(list(data.load("train")), RunContext(seed=0))
        state.mkdir(parents=True, exist_ok=True)
        didgen.save(state)
    val = list(data.load("val"))
    conds = [Condition(mask=s.mask, meta={"index": i}) for i, s in enumerate(val)]
    cls = METHODS.get(method_id)
    option = GUIDED[method_id][0]
    scores = {}
    for name, overrides in (("guided", {}), ("unguided", {option: 0.0})):
        model = cls(_mini_config(method_id, **overrides))
        model.load(state)
        images = torch.stack([s.image for s in model.generate(conds, RunContext(seed=seed))])
        side = images.shape[-1]
        scores[name] = lesion_darkness(images, torch.stack([resize_mask(s.mask, side) for s in val]))
    side = model.config.resolution
    real = lesion_darkness(torch.stack([resize_image(s.image, side) for s in val]),
                           torch.stack([resize_mask(s.mask, side) for s in val]))
    return {"real": float(real.mean()), "guided": float(scores["guided"].mean()),
            "guided_std": float(scores["guided"].std()), "unguided": float(scores["unguided"].mean()),
            "unguided_std": float(scores["unguided"].std()),
            "improved": int((scores["guided"] > scores["unguided"]).sum()), "n": n_masks}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, required=True, help="DiDGen fit state folder (created if empty)")
    parser.add_argument("--method", choices=sorted(GUIDED), action="append", help="default: both")
    parser.add_argument("--masks", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for method_id in args.method or sorted(GUIDED):
        r = compare(args.state, method_id, n_masks=args.masks)
        print(f"{method_id}: lesion darkness (outside - inside), {r['n']} val masks: real {r['real']:.3f}  "
              f"guided {r['guided']:.3f} +- {r['guided_std']:.3f}  unguided {r['unguided']:.3f} +- "
              f"{r['unguided_std']:.3f}  improved {r['improved']}/{r['n']}")


if __name__ == "__main__":
    main()
