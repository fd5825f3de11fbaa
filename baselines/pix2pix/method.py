"""pix2pix: the Pix2Pix baseline (Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017) of DiffBoost's Table I: an edge map -> image conditional GAN trained on the
(edge map, image) pairs of the task's fit set, then given the test images' edge maps.

Every choice is an option with the paper's value as default (README): U-Net generator with skips, 70x70 PatchGAN,
cGAN loss + lambda 100 L1, Adam 2e-4 (0.5, 0.999), N(0, 0.02) initialisation, batch 1, dropout and batch statistics
kept at test time (``test_mode: train``, section 3.2 / 4: "we apply dropout at test time, and we apply batch
normalization using the statistics of the test batch").
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

GENERATOR_FILE = "generator.safetensors"
STATE_FILE = "pix2pix.json"
#: fit sets up to this size are read once into memory; larger ones batch by batch (same result)
PRELOAD_LIMIT = 20000


@dataclass(frozen=True)
class Pix2PixConfig:
    """Pix2Pix options; defaults are the paper profile (Isola et al. 2017; "code": the authors' pytorch code)."""

    resolution: int = 256
    """Training / generation side in pixels (paper: 256; DiffBoost's code samples RadImageNet at 256)."""
    input_channels: Literal[1, 3] = 1
    """Channels of the edge map given to G and D: 1 (the map's first channel; the task's three are equal) or 3."""
    num_downs: int | None = None
    """U-Net levels; None: log2(resolution) (8 at 256 px, the paper's encoder C64-...-C512 down to 1x1)."""
    ngf: int = 64
    """Width of G's first layer (paper: 64)."""
    ndf: int = 64
    """Width of D's first layer (paper: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the PatchGAN: 3 = the 70x70 PatchGAN (paper), 2 = 34x34, 1 = 16x16."""
    norm: Literal["batch", "instance"] = "batch"
    """Normalisation of G and D (paper: batch norm; at batch 1 it acts as instance norm)."""
    dropout: float = 0.5
    """Dropout of the decoder's first ``n_dropout`` layers after the innermost (paper: 0.5, its only noise source)."""
    n_dropout: int = 3
    """Decoder layers with dropout (paper / code: 3)."""
    lambda_l1: float = 100.0
    """Weight of the L1 term (paper: 100)."""
    gan_mode: Literal["vanilla", "lsgan"] = "vanilla"
    """GAN loss: ``vanilla`` (the paper's cross-entropy cGAN objective) or least squares."""
    epochs: int = 100
    """Epochs at the base lr (the authors' code: 100; the paper's epochs vary by dataset)."""
    decay_epochs: int = 100
    """Epochs of linear lr decay to 0 after ``epochs`` (code: 100)."""
    batch_size: int = 1
    """Training batch (paper: 1 for most experiments)."""
    lr: float = 2e-4
    """Adam learning rate of G and D (paper: 2e-4)."""
    beta1: float = 0.5
    """Adam beta1 (paper: 0.5)."""
    beta2: float = 0.999
    """Adam beta2 (paper: 0.999)."""
    init_gain: float = 0.02
    """Std of the Gaussian weight initialisation (paper: 0.02)."""
    test_mode: Literal["train", "eval"] = "train"
    """Generation with dropout on and batch statistics of each image (``train``: the paper, one image at a time,
    dropout seeded per condition) or the usual eval mode (running statistics, no dropout; ``generate_batch``)."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    generate_batch: int = 16
    """Conditions generated together with ``test_mode: eval``."""

    def levels(self) -> int:
        return self.num_downs if self.num_downs is not None else int(round(math.log2(self.resolution)))

    def validate(self) -> None:
        from bench.config import ConfigError

        for key in ("resolution", "ngf", "ndf", "n_layers_d", "batch_size", "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("epochs", "decay_epochs", "n_dropout"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.{key} must be >= 0, got {getattr(self, key)}")
        if self.levels() < 2 or self.resolution % 2 ** self.levels():
            raise ConfigError(f"method.resolution={self.resolution} must be a multiple of 2**num_downs "
                              f"(num_downs={self.levels()} >= 2)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"method.dropout must be in [0, 1), got {self.dropout}")


class Pix2Pix(GeneratorBase):
    """Edge map -> image: a Pix2Pix U-Net trained adversarially with an L1 term on the task's (edges, image) pairs."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"edges"}), returns=frozenset({"image"}),
                                                        requires=frozenset({"edges"}))
    Config = Pix2PixConfig
    version: ClassVar[str] = "1"

    def __init__(self, config: Pix2PixConfig | None = None) -> None:
        super().__init__(config)
        self.generator: torch.nn.Module | None = None
        self.log: list[dict[str, float]] = []

    def build_generator(self) -> torch.nn.Module:
        from .model import UNetGenerator

        c = self.config
        return UNetGenerator(c.input_channels, 3, c.levels(), c.ngf, c.norm, c.dropout, c.n_dropout)

    def build_discriminator(self) -> torch.nn.Module:
        from .model import PatchDiscriminator

        c = self.config
        return PatchDiscriminator(c.input_channels + 3, c.ndf, c.n_layers_d, c.norm)

    def _initialised(self, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """G and D with N(0, init_gain) weights drawn from ``seed`` (G first), as a fit starts."""
        from bench.gan.conditional import initialised_pair

        from .model import init_weights

        return initialised_pair(self.build_generator, self.build_discriminator, init_weights, self.config.init_gain,
                                seed)

    def _edge_input(self, edges: torch.Tensor) -> torch.Tensor:
        """(C, H, W) edge map in [0, 1] -> (input_channels, R, R)."""
        from bench.tasks.common import resize_image

        e = edges.float()
        e = e[:1] if self.config.input_channels == 1 else (e.expand(3, -1, -1) if e.shape[0] == 1 else e[:3])
        return resize_image(e, self.config.resolution)

    # -- protocol ----------------------------------------------------------------------------------
    def _pair(self, i: int, s: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge input, RGB image at ``resolution``) of fit sample ``i``."""
        from bench.tasks.common import resize_image

        if s.image is None or s.meta.get("edges") is None:
            raise FitSetError(f"pix2pix trains on (edge map, image) pairs: training sample {i} lacks an image or "
                             "meta['edges'] (run it on a task that gives edge maps, e.g. radimagenet-synthesis)")
        image = s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1)
        return self._edge_input(torch.as_tensor(s.meta["edges"])), resize_image(image.float(), self.config.resolution)

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from .model import receptive_field
        from .train import train_pix2pix

        c = self.config
        first = train[0] if len(train) else Sample()
        self._pair(0, first)  # refuse a fit set without edge maps before anything else
        if len(train) <= PRELOAD_LIMIT:  # read once; a larger set (RadImageNet) is read batch by batch
            edges, images = zip(*(self._pair(i, s) for i, s in enumerate(train)))
            pairs: object = (torch.stack(edges), torch.stack(images))
        else:
            pairs = _LazyPairs(train, self._pair)
        seed = derive_seed(c.train_seed, ctx.seed)
        generator, discriminator = self._initialised(seed)
        generator.to(ctx.device)
        discriminator.to(ctx.device)
        steps = (c.epochs + c.decay_epochs) * -(-len(train) // c.batch_size)
        logger.info("pix2pix fit: %d pairs, %d + %d epochs, %d steps, batch %d, lr %g, %d px, U-Net %d levels, "
                    "%dx%d PatchGAN, L1 x%g, %s GAN, edges %s, seed %d", len(train), c.epochs, c.decay_epochs, steps,
                    c.batch_size, c.lr, c.resolution, c.levels(), receptive_field(c.n_layers_d),
                    receptive_field(c.n_layers_d), c.lambda_l1, c.gan_mode, first.meta.get("edge_detector"), seed)
        self.log = train_pix2pix(generator, discriminator, pairs, c, seed=derive_seed(seed, 1), device=ctx.device,
                                 advance=ctx.progress("pix2pix", steps))
        self.generator = generator.requires_grad_(False)

    def _ensure_generator(self, ctx: RunContext) -> torch.nn.Module:
        if self.generator is None:  # untrained: the generator a fit with this run seed starts from
            self.generator = self._initialised(derive_seed(self.config.train_seed, ctx.seed))[0].requires_grad_(False)
        return self.generator.to(ctx.device)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        c = self.config
        for i, cond in enumerate(conditions):
            if cond.edges is None:
                raise ValueError(f"pix2pix needs an edge map in every condition; condition {i} has none")
        generator = self._ensure_generator(ctx)
        if c.test_mode == "train":  # paper: dropout on, batch norm on the test batch (one image)
            generator.train()
            for start, cond in enumerate(conditions):
                index = int(cond.meta.get("index", start))
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(derive_seed(ctx.seed, 17, index))
                    out = generator(self._edge_input(cond.edges)[None].to(ctx.device) * 2 - 1)
                yield Sample(image=((out[0].float().cpu() + 1) / 2).clamp(0, 1),
                             meta={"source_id": cond.meta.get("source_id")})
            generator.eval()
            return
        generator.eval()
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            batch = torch.stack([self._edge_input(cond.edges) for cond in chunk]).to(ctx.device) * 2 - 1
            with torch.no_grad():
                images = ((generator(batch).float().cpu() + 1) / 2).clamp(0, 1)
            for k, cond in enumerate(chunk):
                yield Sample(image=images[k], meta={"source_id": cond.meta.get("source_id")})

    def save(self, path: Path) -> None:
        from bench.gan.conditional import save_generator

        save_generator(self.generator, path, GENERATOR_FILE, STATE_FILE,
                       {"config": asdict(self.config), "log": self.log[-50:]}, "pix2pix")

    def load(self, path: Path) -> None:
        from bench.gan.conditional import load_generator

        generator, state = load_generator(self.build_generator, path, GENERATOR_FILE, STATE_FILE, "Pix2Pix")
        self.generator = generator
        self.log = state.get("log", [])


class _LazyPairs:
    """The fit set's (edge map, image) pairs read on demand: ``batch(indices) -> (edges, images)``."""

    def __init__(self, train: Sequence[Sample], pair: Callable[[int, Sample], tuple[torch.Tensor, torch.Tensor]]):
        self.train, self.pair = train, pair

    def __len__(self) -> int:
        return len(self.train)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edges, images = zip(*(self.pair(int(i), self.train[int(i)]) for i in indices))
        return torch.stack(edges), torch.stack(images)
