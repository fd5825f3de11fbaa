"""How well mini IP-Adapter samples follow their reference and their mask: the README's measured figures.

* Reference following: the mini-clip cosine of each generated image with its own reference minus its mean cosine
  with the other conditions' references (0: the reference is ignored).
* Mask following: lesion darkness (`bench.diffusion.mask_following.lesion_darkness`), the mean luminance
  outside the conditioning mask minus inside it (derm-mini lesions are darker than the skin: real pairs score
  clearly above 0, mask-blind images about 0), and the share of images darker inside their mask than outside.
  Scored twice: with each validation pair's own image as reference (``matched``: the reference shows a lesion
  where the mask is, so an image copying the reference's layout also scores) and with the references rolled by one
  (``swapped``: the reference's lesion is elsewhere, so only following the mask scores).

Reproduce the README's numbers (fit with the ``mini`` profile on the seg-aug mini training pairs, then sample 16
derm-mini validation pairs, each with its own image as reference; untrained = the same model before its fit)::

    python -m baselines.ip_adapter.following --mask-input controlnet --state runs/ipa-controlnet
    python -m baselines.ip_adapter.following --mask-input embed --state runs/ipa-embed

An existing ``--state`` folder (a fit state, e.g. ``<work-dir>/fit/<key>/state`` of a ``bench run``) is reused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


def reference_margin(images: torch.Tensor, references: torch.Tensor, clip: Any) -> float:
    """Mean mini-clip cosine of each image with its own reference minus that with the other references.

    Args:
        images: (N, 3, H, W) generated images in [0, 1], N >= 2.
        references: (N, 3, H', W') their references in [0, 1].
        clip: a `bench.diffusion.models.load_mini_clip` handle (``image_embeddings`` gives unit vectors).
    """
    with torch.no_grad():
        sim = clip.image_embeddings(images) @ clip.image_embeddings(references).T
    own = sim.diag().mean()
    other = (sim.sum() - sim.diag().sum()) / (sim.numel() - len(sim))
    return float(own - other)


def scores(model: Any, conditions: list, seed: int = 1) -> dict[str, float]:
    """Reference margin, mean lesion darkness and the share of images darker inside their mask, for ``model``'s
    samples of ``conditions`` (each with a reference and a mask) at run seed ``seed``."""
    from bench.diffusion.mask_following import lesion_darkness
    from bench.interface import RunContext

    samples = list(model.generate(conditions, RunContext(seed=seed)))
    images = torch.stack([s.image for s in samples])
    masks = torch.stack([s.mask for s in samples])
    darkness = lesion_darkness(images, masks)
    refs = torch.stack([c.reference for c in conditions])
    return {"reference_margin": reference_margin(images, refs, model.encoder.clip),
            "darkness": float(darkness.mean()), "darker_inside": float((darkness > 0).float().mean())}


def compare(state: Path, mask_input: str, n_train: int = 200, n_val: int = 16, seed: int = 0,
            **overrides: Any) -> dict[str, Any]:
    """Fit the ``mini`` profile's IP-Adapter (unless ``state`` holds a fit) and score it before and after.

    Returns:
        ``real`` (darkness of the real validation pairs), ``untrained`` and ``trained``: each ``matched`` and
        ``swapped`` score dicts (`scores`).
    """
    from bench import config as cfg
    from bench.data.derm_mini import DermMini
    from bench.interface import Condition, RunContext
    from bench.tasks.common import resize_image, resize_mask
    from bench.diffusion.mask_following import lesion_darkness

    from .method import IPAdapter, IPAdapterConfig

    values = cfg.profile_section(Path(__file__).with_name("config.yaml"), "mini")
    config = cfg.build(IPAdapterConfig, {**values, "mask_input": mask_input, **overrides}, "method")
    data = DermMini(image_size=64, sizes={"train": n_train, "val": n_val, "test": 1})
    val = list(data.load("val"))
    conds = [Condition(reference=s.image, mask=s.mask, meta={"index": i}) for i, s in enumerate(val)]
    model = IPAdapter(config)
    swapped = [Condition(reference=conds[(i + 1) % len(conds)].reference, mask=c.mask, meta=c.meta)
               for i, c in enumerate(conds)]
    untrained = {"matched": scores(model, conds), "swapped": scores(model, swapped)}
    if (state / "ip_adapter.safetensors").is_file():
        model.load(state)
    else:
        model.fit(list(data.load("train")), RunContext(seed=seed))
        model.save(state)
    trained = {"matched": scores(model, conds), "swapped": scores(model, swapped)}
    size = config.resolution
    real = lesion_darkness(torch.stack([resize_image(s.image, size) for s in val]),
                           torch.stack([resize_mask(s.mask, size) for s in val]))
    return {"real": float(real.mean()), "untrained": untrained, "trained": trained, "n": n_val}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mask-input", default="controlnet", choices=["controlnet", "embed", "none"])
    parser.add_argument("--state", type=Path, required=True, help="fit state folder (created if empty)")
    parser.add_argument("--masks", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="override the mini profile's training steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"steps": args.steps} if args.steps is not None else {}
    r = compare(args.state, args.mask_input, n_val=args.masks, **overrides)
    for arm in ("untrained", "trained"):
        for refs in ("matched", "swapped"):
            s = r[arm][refs]
            print(f"{args.mask_input} {arm:<9} {refs:<7}: reference margin {s['reference_margin']:+.3f}  lesion "
                  f"darkness {s['darkness']:+.3f}  darker inside {s['darker_inside'] * r['n']:.0f}/{r['n']}")
    print(f"real pairs: lesion darkness {r['real']:+.3f}")


if __name__ == "__main__":
    main()
