"""dreambooth: full-UNet fine-tuning with an instance prompt and prior preservation (Ruiz et al., CVPR 2023), the
"DreamBooth" baseline of thesis chapter 4 (Tables 4.1, 4.2, 4.4; spec ``research/ch4_didgen.md`` section 4).

The thesis gives "same hyperparameters" as DiDGen and the prompt ``"An image of lesion on skin."``, no identifier
token and no prior-preservation setting. This baseline therefore runs DiDGen's fine-tuning loop
(`bench.diffusion.t2i_finetune.finetune`, attention loss off, plain words) with:

1. the instance prompt ``instance_prompt`` (an optional ``identifier`` such as ``sks`` goes before ``lesion``),
   followed, for samples of a known class, by ``class_template`` (``"A dermoscopic image of melanoma."``) so that
   derm-cls's class prompts are the ones the model was trained on; the instance prompt alone with probability
   ``prefix_only_rate``;
2. prior preservation (on by default, the spec's recommended reading of the reference script's option): before
   fine-tuning, the frozen base model samples ``num_class_images`` class images from ``class_prompt``; each
   fine-tuning step adds a batch of them with weight ``prior_loss_weight``. The class images are cached in the fit
   folder (``class-images-<key>.safetensors``) and reused when the fit stage is rerun.

Generation is text only: the task's prompt with its leading prefix replaced by the instance prompt.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.diffusion.derm_t2i import PlainT2I, PlainT2IConfig
from bench.interface import Condition, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)

DEFAULT_CLASS_WORDS = {"MEL": "melanoma", "NV": "melanocytic nevus", "BCC": "basal cell carcinoma",
                       "AKIEC": "actinic keratosis", "BKL": "benign keratosis", "DF": "dermatofibroma",
                       "VASC": "vascular lesion"}
"""Class words of derm-cls's default ``class_words`` (its prompt is ``... A dermoscopic image of {word}.``)."""


@dataclass(frozen=True)
class DreamBoothConfig(PlainT2IConfig):
    """SD-Finetune's options (DiDGen's hyperparameters, no attention loss, plain words) plus DreamBooth's."""

    instance_prompt: str = "An image of lesion on skin."
    """Prompt of the training images (thesis: ``"An image of lesion on skin."``)."""
    identifier: str | None = None
    """Rare-token identifier inserted before the first ``lesion`` of the instance prompt (DreamBooth's ``[V]``, e.g.
    ``sks``); None as the thesis gives none."""
    prior_preservation: bool = True
    """Prior-preservation loss on class images of the frozen base model (thesis: unstated; the reference script's
    option, 1 000 class images at weight 1.0, is the recommended reading [I])."""
    num_class_images: int = 1000
    """Class images sampled before fine-tuning (reference script: 1 000)."""
    prior_loss_weight: float = 1.0
    """lambda of ``L_rec + lambda L_prior`` (reference script and DreamBooth: 1.0)."""
    class_prompt: str | None = None
    """Prompt of the class images; None: the instance prompt without the identifier (DreamBooth's class noun
    prompt). Without an identifier both are ``"An image of lesion on skin."``, and the prior term then keeps the
    fine-tuned model near the base model's samples for the very prompt it is trained on."""
    instance_text: Literal["class", "caption", "class+caption", "none"] = "class"
    """What follows the instance prompt in training: ``class_template`` for samples with a class name (real ISIC
    Task 1 images have none, so Table 4.1's run trains on the instance prompt alone), the DermPrompt caption
    (as SD-Finetune), the class sentence followed by the image's DermPrompt (paper profile: the spec's pattern for
    DiDGen, SD-Finetune and DreamBooth alike), or nothing (plain DreamBooth)."""
    class_template: str = "A dermoscopic image of {class_name}."
    """Class sentence of training prompts; derm-cls's class prompts end with the same sentence [I]."""
    class_words: dict = field(default_factory=lambda: dict(DEFAULT_CLASS_WORDS))
    """Words for ``{class_name}`` (derm-cls's defaults)."""
    prompt: Literal["prefix", "dermprompt", "condition"] = "condition"
    """Generation prompt: the task's (derm-quality: the prefix, Table 4.1; derm-cls: the class prompt), the
    instance prompt alone, or instance prompt + a training caption."""

    def validate(self) -> None:
        from bench.config import ConfigError

        super().validate()
        if self.attn_weight != 0 or self.use_placeholders:
            raise ConfigError("dreambooth has no attention loss or placeholders: keep method.attn_weight=0 and "
                              "method.use_placeholders=false")
        if self.prior_preservation and self.num_class_images < 1:
            raise ConfigError(f"method.num_class_images must be >= 1 with prior preservation, got {self.num_class_images}")
        if self.prior_loss_weight < 0:
            raise ConfigError(f"method.prior_loss_weight must be >= 0, got {self.prior_loss_weight}")
        if self.identifier is not None and "lesion" not in self.instance_prompt:
            raise ConfigError("method.identifier goes before 'lesion', but method.instance_prompt has no 'lesion'")


class DreamBooth(PlainT2I):
    """DreamBooth fine-tuning (instance prompt + prior preservation) sampled from text only."""

    Config = DreamBoothConfig
    version: ClassVar[str] = "1"
    # The class images are sampled during fit with the sampling options, and fit keeps captions by `prompt`.
    generation_only: ClassVar[frozenset[str]] = PlainT2I.generation_only - {"prompt", "sampler", "sample_steps",
                                                                            "guidance_scale"}

    def __init__(self, config: DreamBoothConfig | None = None) -> None:
        super().__init__(config)
        self.class_image_file: Path | None = None

    # -- prompts -----------------------------------------------------------------------------------
    @property
    def instance_prefix(self) -> str:
        """The instance prompt with the identifier, e.g. ``"An image of sks lesion on skin."``."""
        c = self.config
        if not c.identifier:
            return c.instance_prompt
        return c.instance_prompt.replace("lesion", f"{c.identifier} lesion", 1)

    @property
    def resolved_class_prompt(self) -> str:
        """The class prompt (default: the instance prompt without the identifier)."""
        return self.config.class_prompt or self.config.instance_prompt

    def _instance_texts(self, samples: Sequence[Sample]) -> list[str | None]:
        c = self.config
        if c.instance_text == "caption":
            return self._captions_for(samples)
        if c.instance_text == "none":
            return [None] * len(samples)
        names = [s.meta.get("class_name") if s.meta else None for s in samples]
        classes = [c.class_template.format(class_name=c.class_words.get(n, n)) if n else None for n in names]
        if c.instance_text == "class+caption":
            captions = [caption for _, caption in self._caption_parts(samples)]
            return [" ".join(t for t in pair if t) or None for pair in zip(classes, captions)]
        return classes

    def _training_prompt(self, text: str | None, rng: Any) -> str:
        from bench.diffusion.dermprompt import PLAIN_PREFIX, training_prompt

        prompt = training_prompt(text, rng, self.config.prefix_only_rate, use_placeholders=False)
        return self.instance_prefix + prompt[len(PLAIN_PREFIX):]

    def _prompt(self, cond: Condition, index: int) -> str:
        from bench.diffusion.dermprompt import PLAIN_PREFIX

        text = super()._prompt(cond, index)
        return self.instance_prefix + text[len(PLAIN_PREFIX):] if text.startswith(PLAIN_PREFIX) else text

    # -- class images ------------------------------------------------------------------------------
    def _class_image_key(self, seed: int) -> str:
        c = self.config
        what = {"backbone": c.backbone, "prompt": self.resolved_class_prompt, "n": c.num_class_images,
                "resolution": c.resolution, "sampler": c.sampler, "steps": c.sample_steps,
                "guidance": c.guidance_scale, "seed": seed}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def class_images(self, ctx: RunContext, seed: int) -> torch.Tensor:
        """``num_class_images`` samples of the base model (call before fine-tuning) for the class prompt, as
        (M, 3, resolution, resolution) uint8; read from ``ctx.work_dir`` when an earlier fit wrote them."""
        from safetensors.torch import load_file, save_file

        from bench.tasks.common import resize_image

        c = self.config
        path = Path(ctx.work_dir) / f"class-images-{self._class_image_key(seed)}.safetensors"
        self.class_image_file = path
        if path.exists():
            logger.info("class images: %d reused from %s", c.num_class_images, path)
            return load_file(str(path))["images"]
        n = c.num_class_images
        advance = ctx.progress("class images", n)
        images = []
        for start in range(0, n, c.generate_batch):
            index = range(start, min(n, start + c.generate_batch))
            batch = self._sample([self.resolved_class_prompt] * len(index), [derive_seed(seed, 29, i) for i in index])
            images.extend((resize_image(im, c.resolution) * 255).round().to(torch.uint8) for im in batch)
            advance(len(index))
        stacked = torch.stack(images)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"images": stacked.contiguous()}, str(tmp), metadata={"prompt": self.resolved_class_prompt})
        tmp.replace(path)
        logger.info("class images: %d sampled from the base model with %r -> %s", n, self.resolved_class_prompt, path)
        return stacked

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image
        from bench.diffusion.t2i_finetune import PriorData, finetune

        self._ensure_model()
        c = self.config
        seed = derive_seed(c.train_seed, ctx.seed)
        self._warn_unknown_identifier()
        prior = None
        if c.prior_preservation:
            images = self.class_images(ctx, seed)
            prior = PriorData(images, [self.resolved_class_prompt] * len(images), c.prior_loss_weight)
        images = torch.stack([resize_image(s.image, c.resolution) for s in train])
        masks = torch.zeros(len(images), c.resolution, c.resolution)
        texts = self._instance_texts(train)
        self.captions = [t for t in self._captions_for(train) if t] if c.prompt == "dermprompt" else []
        logger.info("dreambooth fit: %d images, %d steps, batch %d (+%d class), prior %s, instance %r, class %r",
                    len(images), c.steps, c.batch_size, c.batch_size if prior else 0,
                    f"weight {c.prior_loss_weight}" if prior else "off", self.instance_prefix,
                    self.resolved_class_prompt)
        self.log = finetune(self.parts, images, masks, texts, [], c, seed=seed,
                            advance=ctx.progress("fine-tune", c.steps), prompt_fn=self._training_prompt, prior=prior)

    def _warn_unknown_identifier(self) -> None:
        tok = self.parts.tokenizer
        if self.config.identifier and tok.unk_token_id is not None:
            ids = tok(self.config.identifier, add_special_tokens=False).input_ids
            if tok.unk_token_id in ids:
                logger.warning("identifier %r is out of the tokenizer's vocabulary (unknown token)", self.config.identifier)

    def _sample(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        """Text-to-image samples (B, 3, H, W) in [0, 1], the noise of element k seeded by ``seeds[k]``."""
        from bench.diffusion.sampling import make_scheduler, sample

        c, parts = self.config, self.parts
        shape = parts.sample_shape(1)[1:]
        latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        sched = make_scheduler(c.sampler, parts.scheduler)
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
            cond = parts.encode_prompt(prompts).float()
            sched.set_timesteps(c.sample_steps)
            images = sample(parts.unet, cond, sched, parts.codec, steps=c.sample_steps,
                            guidance_scale=c.guidance_scale, uncond=uncond, latents=latents * sched.init_noise_sigma)
        return images.clamp(0, 1)

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        self._ensure_model()
        for chunk, prompts, seeds in self._batches(conditions, ctx):
            images = self._sample(prompts, seeds)
            for k, cond in enumerate(chunk):
                yield Sample(image=images[k], label=cond.label, prompt=prompts[k])

    def save(self, path: Path) -> None:
        super().save(path)
        info = {"config": asdict(self.config), "instance_prompt": self.instance_prefix,
                "class_prompt": self.resolved_class_prompt,
                "class_images": self.class_image_file.name if self.class_image_file else None}
        (path / "dreambooth.json").write_text(json.dumps(info, default=str))
