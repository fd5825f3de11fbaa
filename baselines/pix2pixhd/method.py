"""pix2pixhd: the Pix2PixHD baseline (Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with
Conditional GANs", CVPR 2018) of thesis chapter 4, Experiment 3 (Tables 4.5 and 4.6): a mask -> image conditional
GAN trained on the task's (image, mask) pairs, then conditioned on DiDGen's generated masks.

The thesis gives no setting beyond "trained on ISIC 2018 Task 1 train pairs"; every choice is an option with the
paper's value as default (section 3.2 and 4 of Wang et al.): the global generator G1 (the local enhancer G2 is
``net_g: local``), 3 PatchGAN discriminators at 3 scales, LSGAN + feature matching (lambda 10) + VGG19 perceptual
loss (lambda 10), Adam 2e-4 (0.5, 0.999), 100 epochs constant then 100 linearly decayed to 0. The binary mask is a
2-channel one-hot label map; no instance map and no feature encoder. Each generated sample is the image with the
mask it was conditioned on.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

GENERATOR_FILE = "generator.safetensors"
STATE_FILE = "pix2pixhd.json"


@dataclass(frozen=True)
class Pix2PixHDConfig:
    """Pix2PixHD options; defaults are the paper profile (Wang et al. 2018 unless marked)."""

    resolution: int = 256
    """Training/generation side in pixels; masks resized by nearest neighbour, images bilinearly (thesis: 256 [I])."""
    net_g: Literal["global", "local"] = "global"
    """Generator: ``global`` = G1 alone; ``local`` = G1 at half resolution inside the local enhancer G2 (paper:
    G1 for 1024x512, G1+G2 for 2048x1024; at 256 px G1 alone already covers 4x the resolution G1 was built for)."""
    label_channels: Literal[1, 2] = 2
    """Label-map encoding of the binary mask: 2 = one-hot (background, lesion), as the paper's one-hot semantic
    label maps; 1 = the bare mask in {0, 1}."""
    noise_channels: int = 0
    """N(0, 1) channels appended to G's input (not in the paper, whose diversity comes from an instance-feature
    encoder that binary masks cannot feed); seeded per condition index at generation."""
    ngf: int = 64
    """Base width of G1 (paper code: 64; with ``net_g: local`` the width of G2, G1 gets twice as many)."""
    n_downsampling: int = 4
    """Stride-2 convs of G1 (paper code: 4 for G1 alone, 3 inside the local enhancer)."""
    n_blocks: int = 9
    """Residual blocks of G1 (paper: 9)."""
    n_blocks_local: int = 3
    """Residual blocks of G2 (paper: 3); used with ``net_g: local``."""
    ndf: int = 64
    """Width of the first discriminator layer (paper: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers per PatchGAN discriminator (paper: 3, the 70x70 PatchGAN)."""
    num_d: int = 3
    """Discriminator scales (paper section 3.2: 3; the authors' code defaults to 2)."""
    lambda_feat: float = 10.0
    """Weight of the discriminator feature-matching loss (paper eq. 5: 10)."""
    lambda_vgg: float = 10.0
    """Weight of the VGG19 perceptual loss (paper: 10; 0 turns it off and needs no weights)."""
    vgg_layer_weights: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    """Weights of relu1_1 ... relu5_1 in the VGG loss (the paper gives none; authors' code)."""
    weights_dir: str | None = None
    """Folder holding torchvision's ``vgg19-dcbbe1e0.pth`` (else ``$BENCH_WEIGHTS``)."""
    vgg_path: str | None = None
    """Explicit VGG19 checkpoint file (overrides ``weights_dir``)."""
    epochs: int = 200
    """Training epochs (paper: 200)."""
    decay_epochs: int = 100
    """Epochs at the end over which the lr decays linearly to 0 (paper: the last 100); 0 = constant lr."""
    batch_size: int = 1
    """Training batch size (the paper gives none; authors' code: 1)."""
    lr: float = 2e-4
    """Adam learning rate of G and D (paper: 2e-4)."""
    beta1: float = 0.5
    """Adam beta1 (paper code: 0.5)."""
    beta2: float = 0.999
    """Adam beta2."""
    init_gain: float = 0.02
    """Std of the N(0, std) conv initialisation (pix2pix family code; the paper does not say)."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    generate_batch: int = 16
    """Conditions generated together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        for key in ("resolution", "ngf", "ndf", "n_layers_d", "num_d", "batch_size", "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("noise_channels", "n_downsampling", "n_blocks", "n_blocks_local", "epochs", "decay_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.{key} must be >= 0, got {getattr(self, key)}")
        if self.decay_epochs > self.epochs:
            raise ConfigError(f"method.decay_epochs={self.decay_epochs} exceeds method.epochs={self.epochs}")
        factor = 2 ** (self.n_downsampling + (self.net_g == "local"))
        if self.resolution % factor:
            raise ConfigError(f"method.resolution={self.resolution} is not a multiple of {factor} "
                              f"(2**n_downsampling{', x2 for the local enhancer' if self.net_g == 'local' else ''})")
        if len(self.vgg_layer_weights) != 5:
            raise ConfigError(f"method.vgg_layer_weights needs 5 values (relu1_1 ... relu5_1), "
                              f"got {len(self.vgg_layer_weights)}")


class Pix2PixHD(GeneratorBase):
    """Mask -> image: a Pix2PixHD generator trained adversarially on the task's (image, mask) pairs."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"mask"}),
                                                        returns=frozenset({"image", "mask"}),
                                                        requires=frozenset({"mask"}))
    Config = Pix2PixHDConfig
    version: ClassVar[str] = "1"

    def __init__(self, config: Pix2PixHDConfig | None = None) -> None:
        super().__init__(config)
        self.generator: torch.nn.Module | None = None
        self.log: list[dict[str, float]] = []

    def build_generator(self) -> torch.nn.Module:
        """A fresh generator for this config (PyTorch's default initialisation)."""
        from .model import GlobalGenerator, LocalEnhancer

        c = self.config
        in_channels = c.label_channels + c.noise_channels
        if c.net_g == "local":
            return LocalEnhancer(in_channels, 3, c.ngf, c.n_downsampling, c.n_blocks, c.n_blocks_local)
        return GlobalGenerator(in_channels, 3, c.ngf, c.n_downsampling, c.n_blocks)

    def build_discriminator(self) -> torch.nn.Module:
        from .model import MultiscaleDiscriminator

        c = self.config
        return MultiscaleDiscriminator(c.label_channels + 3, c.ndf, c.n_layers_d, c.num_d)

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import stack_pairs

        from .losses import load_vgg_loss
        from .model import label_map
        from .train import train_pix2pixhd

        c = self.config
        vgg = load_vgg_loss(c.weights_dir, c.vgg_path, c.vgg_layer_weights) if c.lambda_vgg else None
        images, masks = stack_pairs(train, c.resolution, "training sample")
        seed = derive_seed(c.train_seed, ctx.seed)
        generator, discriminator = self._initialised(seed)
        generator.to(ctx.device)
        discriminator.to(ctx.device)
        if vgg is not None:
            vgg.to(ctx.device)
        steps = c.epochs * -(-len(images) // c.batch_size)
        logger.info("pix2pixhd fit: %d pairs, %d epochs (%d decaying), %d steps, batch %d, lr %g, %d px, G %s, "
                    "%d D scales, VGG loss %s, device %s, profile %s, seed %d", len(images), c.epochs,
                    c.decay_epochs, steps, c.batch_size, c.lr, c.resolution, c.net_g, c.num_d,
                    "on" if vgg is not None else "off", ctx.device, ctx.profile, seed)
        self.log = train_pix2pixhd(generator, discriminator, label_map(masks, c.label_channels), images, c,
                                   seed=derive_seed(seed, 1), vgg=vgg, device=ctx.device,
                                   advance=ctx.progress("pix2pixhd", steps))
        self.generator = generator.requires_grad_(False)

    def _initialised(self, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """G and D with N(0, init_gain) conv weights drawn from ``seed`` (G first), as a fit starts."""
        from bench.gan.conditional import initialised_pair

        from .model import init_weights

        return initialised_pair(self.build_generator, self.build_discriminator, init_weights, self.config.init_gain,
                                seed)

    def _ensure_generator(self, ctx: RunContext) -> torch.nn.Module:
        if self.generator is None:  # untrained: the generator a fit with this run seed starts from
            self.generator = self._initialised(derive_seed(self.config.train_seed, ctx.seed))[0].requires_grad_(False)
        return self.generator.to(ctx.device).eval()

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.controlnet import noise_generator  # derive_seed(seed, 17, index), as the other baselines
        from bench.tasks.common import resize_mask

        from .model import label_map

        c = self.config
        for i, cond in enumerate(conditions):
            if cond.mask is None:
                raise ValueError(f"pix2pixhd needs a mask in every condition; condition {i} has none")
        generator = self._ensure_generator(ctx)
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            masks = torch.stack([resize_mask(cond.mask, c.resolution) for cond in chunk])
            g_in = label_map(masks, c.label_channels)
            if c.noise_channels:
                index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
                noise = torch.stack([torch.randn((c.noise_channels, c.resolution, c.resolution),
                                                 generator=noise_generator(ctx.seed, i)) for i in index])
                g_in = torch.cat([g_in, noise], 1)
            with torch.no_grad():
                images = (generator(g_in.to(ctx.device)).float().cpu() + 1) / 2
            for k, cond in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1), mask=masks[k], meta={"source_id": cond.meta.get("source_id")})

    def save(self, path: Path) -> None:
        from bench.gan.conditional import save_generator

        save_generator(self.generator, path, GENERATOR_FILE, STATE_FILE,
                       {"config": asdict(self.config), "log": self.log[-50:]}, "pix2pixhd")

    def load(self, path: Path) -> None:
        from bench.gan.conditional import load_generator

        generator, state = load_generator(self.build_generator, path, GENERATOR_FILE, STATE_FILE, "Pix2PixHD")
        self.generator = generator.eval()
        self.log = state.get("log", [])
