"""DiffBoost (Zhang et al.; seed 002): an edge-conditioned ControlNet, pretrained on many modalities and fine-tuned on
the task, re-renders each real training image from its edges (image edges plus the mask boundary); the real mask is
reused, and the segmenter trains on random patch merges of real and synthetic images. See README.md and spec
``research/papers_meddiff_diffboost.md`` Part B."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.diffusion.models import DIFFBOOST_CONTROLNET_DIR
from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

CONTROLNET_DIR = "controlnet"
STATE_FILE = "diffboost.json"


@dataclass(frozen=True)
class DiffBoostConfig:
    """DiffBoost options; defaults are the paper profile (spec B.3-B.7, B.13; [O] the spec's choices)."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers SD folder (paper: SD-1.5)."""
    resolution: int = 384
    """Fine-tuning / sampling side (code: 384; mini-sd: 32)."""
    prompt: str = "Lesion, Dermoscopy"
    """Task prompt "<Organ>, <Modality>" (code: "Prostate, MRI", "Spleen, CT", "Breast, Ultrasound")."""
    edge_detector: Literal["hed", "canny", "sobel"] = "hed"
    """Image-edge detector: HED (code; weights from ``hed_weights``) or a classical one (mini: canny, spec B.14)."""
    hed_weights: str | None = None
    """With ``edge_detector: hed``: the local ``network-bsds500.pth`` (sniklaus' HED, what the code's annotator
    downloads)."""
    edge_sigma: float = 2.0
    """Canny's Gaussian sigma."""
    pretrain: Literal["mini-worlds", "folder", "fit-set", "none"] = "folder"
    """Pretraining: RadImageNet-style image folder (``pretrain_data``; paper), the package's mini worlds (mini), the
    samples `fit` is given (``fit-set``: radimagenet-synthesis hands RadImageNet's train split, so Table I's test
    images stay out of pretraining), or none (the ControlNet starts as the UNet copy)."""
    pretrain_data: str | None = None
    """With ``pretrain: folder``: images under ``<modality>/<organ>/<category>/`` folders (RadImageNet layout); the
    prompt is the comma-joined folder path."""
    pretrained_controlnet: str | None = None
    """A pretrained ControlNet folder (``save_pretrained``), or ``diffboost-controlnet-mini`` (the package's shipped
    mini pretraining, model card ``bench/foundation/weights/diffboost-controlnet-mini.md``); used instead of
    pretraining when given. None: pretrain as ``pretrain`` says (cached per recipe and seed)."""
    pretrain_worlds: tuple[str, ...] = ("cxr-mini", "derm-mini-99", "generic-world")
    """With ``pretrain: mini-worlds``: the worlds mixed (methods/diffboost/train.py MINI_WORLDS)."""
    pretrain_per_world: int = 400
    """Images per mini world."""
    pretrain_steps: int = 2000
    """Pretraining steps."""
    pretrain_lr: float = 1e-5
    """Pretraining AdamW lr (paper: 1e-5)."""
    pretrain_batch_size: int = 48
    """Pretraining batch (paper: 48 per GPU)."""
    steps: int = 2000
    """Fine-tuning steps (code: 400 / 1600 epochs of batch 32; paper: 100 epochs of batch 48)."""
    batch_size: int = 32
    """Fine-tuning batch (code: 32; paper: 48)."""
    lr: float = 1e-6
    """Fine-tuning AdamW lr (paper and code: 1e-6)."""
    augment: bool = True
    """The code's joint rotation (+-20 degrees) and crop (0.75-1.05) of image and edge while training."""
    train_seed: int = 42
    """Training seed, mixed with the run seed."""
    sampler: str = "ddim"
    """Sampler (code: DDIM, eta 0)."""
    sample_steps: int = 20
    """Sampling steps (code: 20)."""
    guidance_scale: float = 9.0
    """Classifier-free guidance (code: 9)."""
    text_mode: Literal["code", "prompt"] = "code"
    """Sampling text: the code's weighted mix of prompt, augmentation phrase and "gray, sketch" embeddings, or the
    plain prompt."""
    seed_mode: Literal["per-sample", "fixed"] = "per-sample"
    """Noise per condition, or the code's seed 1 re-set per training image (same noises for every image)."""
    grayscale: Literal["auto", "on", "off"] = "auto"
    """Cross-channel average of the output (paper's "cross-channel average block"); auto: on when the training
    images are grey."""
    mix_mode: Literal["input", "logit", "none"] = "input"
    """Patch merging in downstream training (B.7): inputs (paper Algorithm 1), logits (code), or none (append)."""
    mix_alpha: float = 0.6
    """Probability of a real patch (code: 0.6)."""
    mix_patch_fraction: float = 1 / 6
    """Patch side / image side (code: 64 / 384)."""
    generate_batch: int = 8
    """Conditions sampled together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        for key in ("resolution", "pretrain_per_world", "pretrain_batch_size", "batch_size", "sample_steps",
                    "generate_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {getattr(self, key)}")
        if self.steps < 0 or self.pretrain_steps < 0:
            raise ConfigError("method.steps and method.pretrain_steps must be >= 0")
        if not 0 <= self.mix_alpha <= 1:
            raise ConfigError(f"method.mix_alpha must be in [0, 1], got {self.mix_alpha}")
        if not 0 < self.mix_patch_fraction <= 1:
            raise ConfigError(f"method.mix_patch_fraction must be in (0, 1], got {self.mix_patch_fraction}")

    def missing_inputs(self) -> str | None:
        """What the user still has to provide (checked when the run starts fitting, not when the config is built:
        the paper profile's own settings name no local file, and a mini record's check resolves every profile)."""
        if self.edge_detector == "hed" and not self.hed_weights:
            return ("method.edge_detector=hed needs method.hed_weights (the local network-bsds500.pth); "
                    "or set method.edge_detector=canny")
        if self.pretrain == "folder" and not self.pretrain_data and not self.pretrained_controlnet:
            return ("method.pretrain=folder needs method.pretrain_data (a RadImageNet-style image folder) "
                    "or method.pretrained_controlnet; or set method.pretrain=none or fit-set")
        return None


class DiffBoost(GeneratorBase):
    """(real image, mask) -> a re-rendering of the image from its edges, with the same mask; or (edge map, prompt) ->
    an image (Table I's reconstruction, with the pretrained ControlNet; the sample has no mask)."""

    # a real image and its mask to re-render (seg-aug), or an edge map to render (radimagenet-synthesis, Table I)
    capabilities: ClassVar[Capabilities] = Capabilities(
        accepts=frozenset({"mask", "reference", "edges", "label", "prompt"}), returns=frozenset({"image", "mask"}),
        requires_one_of=(frozenset({"mask", "reference"}), frozenset({"edges"})))
    Config = DiffBoostConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({
        "sampler", "sample_steps", "guidance_scale", "text_mode", "seed_mode", "grayscale", "mix_mode", "mix_alpha",
        "mix_patch_fraction", "generate_batch"})

    def __init__(self, config: DiffBoostConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.controlnet: Any = None
        self.state: dict[str, Any] = {}
        self._hed: Any = None

    def _ensure_backbone(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone_at

            self.parts = load_backbone_at(self.config.backbone, self.config.resolution, owner="DiffBoost")

    def _hints(self, images: torch.Tensor, masks: Sequence[torch.Tensor | None]) -> torch.Tensor:
        from .edges import edge_condition

        c = self.config
        if c.edge_detector == "hed" and self._hed is None:
            from .hed import load_hed

            self._hed = load_hed(c.hed_weights)
        return torch.stack([edge_condition(x, m, c.edge_detector, c.edge_sigma, hed=self._hed)
                            for x, m in zip(images, masks)])

    def _prepare(self, samples: Sequence[Any]) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        from bench.tasks.common import resize_image, resize_mask

        r = self.config.resolution
        images = torch.stack([resize_image(s.image if s.image.shape[0] == 3 else s.image.expand(3, -1, -1), r)
                              for s in samples])
        masks = [resize_mask(s.mask, r) if s.mask is not None else None for s in samples]
        return images, masks

    # -- pretraining ---------------------------------------------------------------------------------
    def _pretrained(self, ctx: RunContext, seed: int, train: Sequence[Sample] = ()) -> tuple[Any, dict[str, Any]]:
        from bench.diffusion.controlnet import build_controlnet, load_controlnet
        from bench.store import stable_hash

        from .train import cached_folder, mini_world_pairs, store_atomically, train_edge_controlnet

        c = self.config
        if c.pretrained_controlnet == DIFFBOOST_CONTROLNET_DIR:
            from bench.diffusion.models import WEIGHTS_DIR, foundation_identity

            return load_controlnet(WEIGHTS_DIR / DIFFBOOST_CONTROLNET_DIR, self.parts.device), \
                {"pretrain": "shipped", "from": DIFFBOOST_CONTROLNET_DIR, **foundation_identity([DIFFBOOST_CONTROLNET_DIR])}
        if c.pretrained_controlnet:
            return load_controlnet(Path(c.pretrained_controlnet).expanduser(), self.parts.device), \
                {"pretrain": "loaded", "from": c.pretrained_controlnet}
        controlnet = build_controlnet(self.parts.unet, self.parts.codec.factor, 3, None, seed=seed)
        if c.pretrain == "none":
            return controlnet, {"pretrain": "none"}
        if c.pretrain == "fit-set":  # no cache of its own: the runner caches the fit stage
            samples = list(train)
            images, _ = self._prepare(samples)
            hints = self._fit_hints(samples, images)
            log = train_edge_controlnet(self.parts, controlnet, images, hints, [s.prompt or c.prompt for s in samples],
                                        c.pretrain_steps, c.pretrain_batch_size, c.pretrain_lr, derive_seed(seed, 1),
                                        c.augment, advance=ctx.progress("pretrain controlnet", c.pretrain_steps))
            return controlnet, {"pretrain": "fit-set", "pairs": len(samples), "log": log[-10:]}
        recipe = {"backbone": self.parts.name, "resolution": c.resolution, "pretrain": c.pretrain,
                  "worlds": list(c.pretrain_worlds), "data": c.pretrain_data, "per_world": c.pretrain_per_world,
                  "steps": c.pretrain_steps, "lr": c.pretrain_lr, "batch": c.pretrain_batch_size,
                  "edges": [c.edge_detector, c.edge_sigma], "augment": c.augment, "seed": seed}
        key = stable_hash(recipe, 16)
        folder = cached_folder(Path(ctx.cache_dir or ctx.work_dir), key)
        if (folder / "config.json").is_file():
            logger.info("diffboost: pretrained ControlNet cached (%s)", folder)
            return load_controlnet(folder, self.parts.device), {"pretrain": c.pretrain, "key": key, "cached": True}
        if c.pretrain == "mini-worlds":
            samples, prompts = mini_world_pairs(c.pretrain_worlds, c.pretrain_per_world, c.resolution)
        else:
            samples, prompts = _folder_pairs(Path(c.pretrain_data).expanduser(), c.resolution)
        images, masks = self._prepare(samples)
        hints = self._hints(images, [None] * len(images))  # pretraining: image edges only (B.4)
        log = train_edge_controlnet(self.parts, controlnet, images, hints, prompts, c.pretrain_steps,
                                    c.pretrain_batch_size, c.pretrain_lr, derive_seed(seed, 1), c.augment,
                                    advance=ctx.progress("pretrain controlnet", c.pretrain_steps))
        store_atomically(controlnet, folder)
        return controlnet, {"pretrain": c.pretrain, "key": key, "cached": False, "pairs": len(images),
                            "log": log[-10:]}

    # -- protocol ------------------------------------------------------------------------------------
    def _fit_hints(self, samples: Sequence[Sample], images: torch.Tensor) -> torch.Tensor:
        """Edge hints of fit samples: the task's own edge map (``meta["edges"]``, radimagenet-synthesis) when every
        sample carries one, else the image edges (pretraining data has no masks, B.4)."""
        from bench.tasks.common import resize_image

        if samples and all(s.meta.get("edges") is not None for s in samples):
            return torch.stack([resize_image(torch.as_tensor(s.meta["edges"]).float().expand(3, -1, -1),
                                             self.config.resolution) for s in samples])
        return self._hints(images, [None] * len(images))

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        """Pretrain (cached), then fine-tune on the task's image-mask pairs (B.5). A fit set without masks
        (radimagenet-synthesis: the pretraining data itself) is not fine-tuned on: Table I scores the pretrained
        ControlNet (B.4); ``pretrain: fit-set`` pretrains on it, the other settings check it against their own."""
        from .train import mini_world_pairs, train_edge_controlnet

        from bench.errors import UserInputError

        c = self.config
        if c.missing_inputs():
            raise UserInputError(c.missing_inputs())
        if len(train) == 0 or train[0].image is None:
            raise FitSetError("diffboost trains on images; the fit set is empty or its first sample has no image")
        self._ensure_backbone()
        seed = derive_seed(c.train_seed, ctx.seed)
        if train[0].mask is None:
            self.controlnet, pre = self._pretrained(ctx, seed, train)
            note = None
            if c.pretrain == "mini-worlds":
                ids = [s.meta.get("id") for s in mini_world_pairs(c.pretrain_worlds, c.pretrain_per_world,
                                                                  c.resolution)[0]]
                same = sorted(ids) == sorted(s.meta.get("id") for s in train)
                note = "the fit set is the pretraining set" if same else "the fit set differs from the pretraining set"
                if not same:
                    logger.warning("diffboost: the task's fit set (%d samples) is not the mini-world pretraining set "
                                   "(%d): generating with the ControlNet pretrained on the latter", len(train), len(ids))
            # up to 256 samples spread over the whole set (a mix lists its worlds one after another)
            sample = [train[int(i)] for i in sorted({round(x) for x in np.linspace(0, len(train) - 1, 256)})]
            grey = bool(all(torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2])
                            for x in self._prepare(sample)[0]))
            logger.info("diffboost fit: %d samples without masks: pretrained ControlNet only (pretrain %s), no "
                        "fine-tuning (B.4, Table I)", len(train), pre.get("pretrain"))
            self.state = {"pretraining": pre, "grey_data": grey, "fine_tuned": False, "fit_set": note}
            return
        bad = [i for i, s in enumerate(train) if s.image is None or s.mask is None]
        if bad:
            raise FitSetError(f"diffboost trains on image-mask pairs; training sample {bad[0]} lacks an image or mask")
        self.controlnet, pre = self._pretrained(ctx, seed)
        images, masks = self._prepare(train)
        hints = self._hints(images, masks)
        grey = bool(all(torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2]) for x in images))
        logger.info("diffboost fit: %d pairs, %d steps, batch %d, lr %g, %d px, edges %s, pretrain %s", len(train),
                    c.steps, c.batch_size, c.lr, c.resolution, c.edge_detector, pre.get("pretrain"))
        log = train_edge_controlnet(self.parts, self.controlnet, images, hints, [c.prompt] * len(images), c.steps,
                                    c.batch_size, c.lr, derive_seed(seed, 2), c.augment,
                                    advance=ctx.progress("fine-tune controlnet", c.steps))
        self.state = {"pretraining": pre, "grey_data": grey, "log": log[-20:]}

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.controlnet import controlnet_residuals
        from bench.diffusion.sampling import make_scheduler, sample

        from .text import AUG_PHRASES, conditioning

        c = self.config
        if self.controlnet is None:
            raise RuntimeError("diffboost: generate() before fit() or load()")
        for i, cond in enumerate(conditions):
            if cond.edges is None and (cond.mask is None or cond.reference is None):
                raise ValueError(f"diffboost re-renders a real image or renders an edge map: condition {i} needs a "
                                 "mask and a reference image, or an edge map")
            detector = cond.meta.get("edge_detector")
            if cond.edges is not None and detector not in (None, c.edge_detector):
                logger.warning("diffboost: condition %d's edge map is %s edges, this ControlNet was trained on %s "
                               "edges (method.edge_detector)", i, detector, c.edge_detector)
        self._ensure_backbone()
        parts = self.parts
        grey = c.grayscale == "on" or (c.grayscale == "auto" and self.state.get("grey_data", False))
        hook = {"kind": "patch-merge", "alpha": c.mix_alpha, "patch_fraction": c.mix_patch_fraction,
                "mode": c.mix_mode} if c.mix_mode != "none" else None
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        seen: dict[Any, int] = {}
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            if all(cond.edges is not None for cond in chunk):  # Table I: the task's edge maps, no mask
                from bench.tasks.common import resize_image

                masks = [None] * len(chunk)
                hints = torch.stack([resize_image(cond.edges.float().expand(3, -1, -1), c.resolution)
                                     for cond in chunk]).to(parts.device)
            else:
                refs, masks = self._prepare([Sample(image=cond.reference, mask=cond.mask) for cond in chunk])
                hints = self._hints(refs, masks).to(parts.device)
            occurrence = []
            for cond in chunk:  # the i-th rendering of one source image gets augmentation phrase i (code)
                sid = cond.meta.get("source_id")
                occurrence.append(seen.get(sid, 0))
                seen[sid] = occurrence[-1] + 1
            seeds = [derive_seed(1, occ) if c.seed_mode == "fixed" else derive_seed(ctx.seed, 17, i)
                     for i, occ in zip(index, occurrence)]
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
            prompts = [cond.prompt if cond.edges is not None and cond.prompt else c.prompt for cond in chunk]
            if len(set(prompts)) == 1:
                cond_text, uncond = conditioning(parts, prompts[0], occurrence, c.text_mode)
            else:  # edge maps of several datasets (the pretraining mix): each with its own prompt
                parts_text = [conditioning(parts, p, [o], c.text_mode) for p, o in zip(prompts, occurrence)]
                cond_text, uncond = torch.cat([t for t, _ in parts_text]), parts_text[0][1]
            sched = make_scheduler(c.sampler, parts.scheduler)
            sched.set_timesteps(c.sample_steps)
            with torch.no_grad():
                images = sample(parts.unet, cond_text, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents.to(parts.device) * sched.init_noise_sigma,
                                unet_kwargs_fn=controlnet_residuals(self.controlnet, hints, 1.0))
            images = images.clamp(0, 1).cpu()
            if grey:
                images = images.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
            for k, cond in enumerate(chunk):
                meta = {"source_id": cond.meta.get("source_id"), "aug_phrase": AUG_PHRASES[occurrence[k] % 50]
                        if c.text_mode == "code" else None}
                if hook is not None and masks[k] is not None:  # patch merging pairs a rendering with its real image
                    meta["train_hook"] = hook
                yield Sample(image=images[k], mask=masks[k], label=cond.label, prompt=prompts[k], meta=meta)

    def save(self, path: Path) -> None:
        from bench.diffusion.controlnet import save_controlnet

        path.mkdir(parents=True, exist_ok=True)
        save_controlnet(self.controlnet, path / CONTROLNET_DIR)
        (path / STATE_FILE).write_text(json.dumps({"config": asdict(self.config), **self.state}, default=str))

    def load(self, path: Path) -> None:
        from bench.diffusion.controlnet import load_controlnet

        controlnet = load_controlnet(path / CONTROLNET_DIR)
        self._ensure_backbone()
        self.controlnet = controlnet.to(device=self.parts.device)
        state = json.loads((path / STATE_FILE).read_text()) if (path / STATE_FILE).is_file() else {}
        state.pop("config", None)
        self.state = state


def _folder_pairs(root: Path, resolution: int) -> tuple[list[Sample], list[str]]:
    """Images of a RadImageNet-style folder and their prompts (the comma-joined folder path, abbreviations
    expanded as the code's ``reorganize_data.py`` does)."""
    import numpy as np
    from PIL import Image

    from bench.data.base import DataError
    from bench.data.radimagenet import folder_prompt

    if not root.is_dir():
        raise DataError(f"method.pretrain_data={root}: not a folder (RadImageNet layout: <modality>/<organ>/<class>/*.png)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif"))
    if not files:
        raise DataError(f"method.pretrain_data={root}: no images found")
    samples, prompts = [], []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB").resize((resolution, resolution), Image.BILINEAR), dtype=np.float32)
        samples.append(Sample(image=torch.from_numpy(arr / 255.0).permute(2, 0, 1).contiguous()))
        prompts.append(folder_prompt(f.parent.relative_to(root).parts))
    return samples, prompts
