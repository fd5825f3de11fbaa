"""`PerClassGAN`: the Generator shared by the unconditional GAN baselines (thesis ch. 4 section 4.4.3).

An unconditional GAN cannot follow a class label, so when the training samples carry labels it trains one
model per class and a condition with label c is sampled from class c's model (thesis: "one model per class",
6 minority classes in Experiment 2). Without labels (ISIC 2018 Task 1, Experiment 1), or with
``per_class: false``, it trains one model on all images. A condition without a label facing per-class models
draws its class from the training class frequencies (the mixture of the class models).

Sample i depends only on (run seed, condition index ``meta["index"]``): its latent (and noise) come from a
generator seeded by ``derive_seed(seed, 63, index)`` and it is generated alone, never in a batch.
Subclasses provide ``build_generator``/``build_discriminator`` and optionally ``schedule`` (progressive
growing) and ``sample``.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from bench.gan.progressive import Stage
from bench.gan.train import GANConfig, images_uint8, to_unit, train_gan
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

ALL = "all"
"""Key of the single model trained on every image."""


def model_keys(labels: Sequence[int | None], per_class: bool) -> list[str]:
    """The model each training sample goes to: its label (as a string) or ``"all"``."""
    if per_class and any(lab is not None for lab in labels):
        if any(lab is None for lab in labels):
            raise ValueError("per-class GAN training needs a label on every training sample or on none")
        return [str(int(lab)) for lab in labels]
    return [ALL] * len(labels)


def power_of_two_side(image: torch.Tensor) -> int:
    """The largest power of two not above the image's shorter side."""
    return 2 ** int(math.log2(min(image.shape[-2:])))


class PerClassGAN(GeneratorBase):
    """Unconditional GAN(s): one per class with labelled training data, else one; samples images only."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"label"}), returns=frozenset({"image"}))
    Config = GANConfig

    def __init__(self, config: GANConfig | None = None) -> None:
        super().__init__(config)
        self.generators: dict[str, nn.Module] = {}
        self.counts: dict[str, int] = {}
        self.resolution: int | None = None

    # -- hooks -------------------------------------------------------------------------------------
    def build_generator(self, resolution: int) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self, resolution: int) -> nn.Module:
        raise NotImplementedError

    def schedule(self, resolution: int) -> Callable[[int], Stage] | None:
        """Stage per training step (progressive growing), or None for a fixed-resolution model."""
        return None

    def sample(self, gen: nn.Module, rng: torch.Generator) -> torch.Tensor:
        """One image (1, 3, R, R) in [-1, 1] from ``gen``, all randomness drawn from ``rng``."""
        return gen(**gen.sample_inputs(1, rng))

    # -- Generator ---------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        """Train one GAN per class of ``train`` (or one on all); images are squashed to ``resolution``."""
        c = self.config
        samples = list(train)
        if not samples:
            raise ValueError("no training images")
        self.resolution = c.resolution or power_of_two_side(samples[0].image)
        keys = model_keys([s.label for s in samples], c.per_class)
        images = images_uint8(samples, self.resolution)
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        logger.info("fit %s: %d images, %d model(s) %s, %d px, %d steps x batch %d, %s, %s, device %s, profile %s, "
                    "seed %d", type(self).__name__, len(samples), len(groups), sorted(groups), self.resolution,
                    c.steps, c.batch_size, c.loss, c.optimizer, ctx.device, ctx.profile, ctx.seed)
        self.generators, self.counts = {}, {}
        for key in sorted(groups, key=_key_order):
            salt = -1 if key == ALL else int(key)
            torch.manual_seed(derive_seed(ctx.seed, 61, salt))
            gen, disc = self.build_generator(self.resolution), self.build_discriminator(self.resolution)
            g, summary = train_gan(gen, disc, images[groups[key]], c, seed=derive_seed(ctx.seed, 62, salt),
                                   schedule=self.schedule(self.resolution),
                                   advance=ctx.progress(f"fit {key}", c.steps), device=ctx.device)
            logger.info("model %s: %d images, %.1f s, final d_loss %.4f g_loss %.4f", key, len(groups[key]),
                        summary["seconds"], summary["d_loss"], summary["g_loss"])
            self.generators[key] = g.cpu()
            self.counts[key] = len(groups[key])

    def _model_for(self, label: int | None, rng: torch.Generator) -> str:
        if ALL in self.generators:
            return ALL
        if label is None:  # the mixture of the class models, weighted by the training class sizes
            keys = sorted(self.counts, key=_key_order)
            weights = torch.tensor([float(self.counts[k]) for k in keys])
            return keys[int(torch.multinomial(weights, 1, generator=rng))]
        if str(label) not in self.generators:
            raise ValueError(f"no model for class {label}: trained classes {sorted(self.generators, key=_key_order)}")
        return str(label)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if not self.generators:
            raise RuntimeError(f"{type(self).__name__}.generate called before fit or load")
        for k, cond in enumerate(conditions):
            index = int(cond.meta.get("index", k))
            rng = torch.Generator().manual_seed(derive_seed(ctx.seed, 63, index))
            key = self._model_for(cond.label, rng)
            with torch.no_grad():
                image = to_unit(self.sample(self.generators[key], rng)[0].float())
            yield Sample(image=image, label=cond.label, meta={"model": key})

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {f"{key}/{name}": t.detach().cpu().contiguous()
                   for key, g in self.generators.items() for name, t in g.state_dict().items()}
        save_file(tensors, str(path / "generators.safetensors"))
        (path / "state.json").write_text(json.dumps({"resolution": self.resolution, "counts": self.counts}, indent=1))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        path = Path(path)
        state = json.loads((path / "state.json").read_text())
        self.resolution, self.counts = int(state["resolution"]), {k: int(v) for k, v in state["counts"].items()}
        tensors = load_file(str(path / "generators.safetensors"))
        self.generators = {}
        for key in self.counts:
            g = self.build_generator(self.resolution)
            prefix = f"{key}/"
            g.load_state_dict({n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)})
            self.generators[key] = g.eval().requires_grad_(False)


def _key_order(key: str) -> tuple[int, int]:
    return (0, -1) if key == ALL else (1, int(key))
