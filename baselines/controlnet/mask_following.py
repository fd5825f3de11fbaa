"""How well mini ControlNet samples follow their conditioning masks: lesion darkness on derm-mini.

derm-mini lesions are darker than the surrounding skin on most images, so the mean luminance outside a mask minus
inside it (the "lesion darkness") is positive for real pairs and near zero for images that ignore the mask. An
untrained ControlNet adds zero residuals, so its samples are the backbone's, blind to the mask.

Reproduce the README's numbers (fit on the seg-aug mini training pairs, then sample 16 validation masks)::

    python -m baselines.controlnet.mask_following --lr 1e-3 --state runs/cn-lr1e-3
    python -m baselines.controlnet.mask_following --lr 1e-4 --state runs/cn-lr1e-4

An existing ``--state`` folder (a fit state, e.g. ``<work-dir>/fit/<key>/state`` of a ``bench run``) is reused.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from bench.diffusion.mask_following import lesion_darkness

logger = logging.getLogger(__name__)


def compare(state: Path, lr: float, steps: int = 300, n_train: int = 200, n_masks: int = 16,
            seed: int = 0) -> dict[str, float]:
    """Fit (unless ``state`` holds a fit) and score untrained vs trained ControlNet samples on validation masks.

    Returns:
        mean lesion darkness of the real pairs, the untrained and the trained samples, and the number of masks
        whose darkness improved.
    """
    from bench.data.derm_mini import DermMini
    from bench.interface import Condition, RunContext
    from bench.tasks.common import resize_image, resize_mask

    from .method import ControlNet, ControlNetConfig

    data = DermMini(image_size=64, sizes={"train": n_train, "val": n_masks, "test": 1})
    config = ControlNetConfig(backbone="mini-sd", resolution=32, steps=steps, batch_size=4, lr=lr, sample_steps=20,
                              guidance_scale=3.0, generate_batch=n_masks)
    if not (state / "controlnet" / "config.json").is_file():
        fitted = ControlNet(config)
        fitted.fit(list(data.load("train")), RunContext(seed=seed))
        fitted.save(state)
    val = list(data.load("val"))
    conds = [Condition(mask=s.mask, meta={"index": i}) for i, s in enumerate(val)]
    masks = torch.stack([resize_mask(s.mask, 32) for s in val])
    model = ControlNet(config)
    untrained = lesion_darkness(torch.stack([s.image for s in model.generate(conds, RunContext(seed=1))]), masks)
    model.load(state)
    trained = lesion_darkness(torch.stack([s.image for s in model.generate(conds, RunContext(seed=1))]), masks)
    real = lesion_darkness(torch.stack([resize_image(s.image, 32) for s in val]), masks)
    return {"real": float(real.mean()), "untrained": float(untrained.mean()), "trained": float(trained.mean()),
            "improved": int((trained > untrained).sum()), "n": n_masks}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--state", type=Path, required=True, help="fit state folder (created if empty)")
    parser.add_argument("--masks", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    r = compare(args.state, args.lr, args.steps, n_masks=args.masks)
    print(f"lesion darkness (outside - inside), {r['n']} val masks: real {r['real']:.3f}  "
          f"untrained {r['untrained']:.3f}  trained {r['trained']:.3f}  improved {r['improved']}/{r['n']}")


if __name__ == "__main__":
    main()
