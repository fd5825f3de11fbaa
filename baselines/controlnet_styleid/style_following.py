"""How far Stage 2 (StyleID) moves the ControlNet's samples toward their references, on mini-sd and derm-mini.

Colour distance of an image to its reference: the Euclidean distance between their per-channel RGB means and
standard deviations (6 numbers each, `bench.diffusion.style.channel_statistics` over the pixels), both at the
generation size. The structure check is `bench.diffusion.mask_following.lesion_darkness` (mean luminance
outside the conditioning mask minus inside; positive when the lesion is darker, as real derm-mini lesions are).

Conditions are what ``lowcontrast`` gives: the mask and the image of low-contrast derm-mini training images (ITA
difference < 30). Reproduce the README's numbers (fits the ControlNet unless ``--state`` holds a fit)::

    python -m baselines.controlnet_styleid.style_following --state runs/cn-styleid --fit-steps 100 --conditions 8
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


def colour_distance(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per image (N,): ``||(mu, sigma)(image) - (mu, sigma)(reference)||_2`` over the RGB channels.

    Args:
        images, references: (N, 3, H, W) in [0, 1], same shape.
    """
    from bench.diffusion.style import channel_statistics

    mu, sd = channel_statistics(images.float())
    mu_r, sd_r = channel_statistics(references.float())
    return (torch.cat([mu - mu_r, sd - sd_r], 1)).pow(2).sum(1).sqrt()


VARIANTS: dict[str, dict[str, Any]] = {
    "styleid": {},
    "injection only (adain_init off)": {"adain_init": False},
    "adain only (inject_layers 0)": {"inject_layers": 0},
    "ddim reconstruction (neither)": {"inject_layers": 0, "adain_init": False},
}


def compare(state: Path, fit_steps: int = 100, n_conditions: int = 8, n_train: int = 200, seed: int = 0,
            profile: str = "mini") -> dict[str, Any]:
    """Fit (unless ``state`` holds one) the profile's ControlNet, generate ``n_conditions`` low-contrast conditions
    with Stage 1 only and with each StyleID variant; colour distances to the references and lesion darkness."""
    from bench.diffusion.mask_following import lesion_darkness
    from bench.config import build, profile_section
    from bench.data.derm_mini import DermMini
    from bench.interface import Condition, RunContext
    from bench.tasks.common import resize_image, resize_mask
    from bench.tasks.lowcontrast import select_low_contrast

    from .method import ControlNet, ControlNetStyleID, ControlNetStyleIDConfig

    yaml = Path(__file__).with_name("config.yaml")
    config = dataclasses.replace(build(ControlNetStyleIDConfig, profile_section(yaml, profile), profile),
                                 steps=fit_steps)
    train = list(DermMini(image_size=64, sizes={"train": n_train, "val": 1, "test": 1}).load("train"))
    chosen, _ = select_low_contrast(train, 30.0)
    chosen = chosen[:n_conditions]
    conds = [Condition(mask=train[i].mask, reference=train[i].image, meta={"index": k}) for k, i in enumerate(chosen)]
    if not (state / "controlnet" / "config.json").is_file():
        fitted = ControlNetStyleID(config)
        fitted.fit(train, RunContext(seed=seed))
        fitted.save(state)
    size = config.resolution
    refs = torch.stack([resize_image(c.reference, size) for c in conds])
    masks = torch.stack([resize_mask(c.mask, size) for c in conds])
    out: dict[str, Any] = {"n": len(conds), "fit_steps": fit_steps,
                           "real": {"darkness": float(lesion_darkness(refs, masks).mean())}}
    model = ControlNetStyleID(config)
    model.load(state)
    content = torch.stack([s.image for s in ControlNet.generate(model, conds, RunContext(seed=seed))])
    before = colour_distance(content, refs)
    out["controlnet"] = {"distance": float(before.mean()), "darkness": float(lesion_darkness(content, masks).mean())}
    for name, change in VARIANTS.items():
        model.config = dataclasses.replace(config, **change)
        images = torch.stack([s.image for s in model.generate(conds, RunContext(seed=seed))])
        after = colour_distance(images, refs)
        out[name] = {"distance": float(after.mean()), "closer": int((after < before).sum()),
                     "darkness": float(lesion_darkness(images, masks).mean())}
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, required=True, help="fit state folder (created if empty)")
    parser.add_argument("--fit-steps", type=int, default=100)
    parser.add_argument("--conditions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    r = compare(args.state, args.fit_steps, args.conditions, seed=args.seed)
    print(f"{r['n']} low-contrast derm-mini conditions, ControlNet fit {r['fit_steps']} steps; real lesion darkness "
          f"{r['real']['darkness']:.3f}")
    print(f"{'output':34s} colour distance to reference   closer than ControlNet   lesion darkness")
    print(f"{'controlnet (stage 1)':34s} {r['controlnet']['distance']:.4f}{'':27s}{'-':25s}{r['controlnet']['darkness']:.3f}")
    for name in VARIANTS:
        v = r[name]
        print(f"{name:34s} {v['distance']:.4f}{'':27s}{v['closer']}/{r['n']:<22d}{v['darkness']:.3f}")


if __name__ == "__main__":
    main()
