"""A text-to-image backbone fine-tuned on dermoscopic image-mask pairs with DermPrompt captions: the part of
DiDGen (thesis chapter 4; ``methods/didgen``) that the baselines and chapter 5's generator share (issue 22
"Structure": ``methods/`` and ``baselines/`` import only ``bench/``, so a method folder can be removed without
breaking a baseline).

* `DermT2IConfig`: DiDGen's options (fine-tuning, DermPrompt captions and inference prompts, sampling, layout
  guidance and mask read-out), in the serialised order of the shipped records;
* `DermT2I`: a `GeneratorBase` that loads the backbone with frozen ``<lesion>``/``<skin>`` placeholders, fine-tunes
  it (`bench.diffusion.t2i_finetune.finetune`, the region-aware loss when ``attn_weight > 0``), builds generation
  prompts (prefix, the task's prompt, or a DermPrompt from a file, an LLM's rephrasings or the training captions)
  and saves/loads the fitted state. Subclasses add ``generate``: DiDGen (layout guidance and attention read-out),
  SD-Finetune (text only), ZestGuide and Attn-Refocus (mask-guided sampling, `generate_with_condition_masks`) and
  the dual-branch generator of chapter 5;
* `PlainT2IConfig` / `PlainT2I`: the plain-word, plain-loss fine-tuning sampled from text only (SD-Finetune, and
  DreamBooth on top of it).

Moved unchanged from ``methods/didgen/method.py`` and ``baselines/sd_finetune/method.py``; configs, run ids and fitted states are the same as before.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DermT2IConfig:
    """Options of the chapter-4 derm text-to-image generators (DiDGen and the baselines sharing its fine-tuning);
    defaults are DiDGen's paper profile (spec sections 1.3, 1.4). The field order is the serialised order of the
    shipped records' resolved configs: append new fields, never reorder."""

    backbone: str = "mini-sd"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (paper: stable-diffusion-2-1-base)."""
    resolution: int = 512
    """Training/generation side in pixels (paper: 512; mini-sd: 32)."""
    caption_file: str | None = None
    """CSV (id, caption) of DermPrompt captions; None uses ``Sample.prompt`` (derm-mini's attribute captions). A
    task's class sentence (derm-cls ``meta["class_sentence"]``) is kept in front of the file's caption."""
    require_captions: bool = True
    """Refuse to fine-tune when no training image has a DermPrompt caption (thesis: DiDGen is fine-tuned on
    DermPrompts; without this a run on ISIC silently trains on the prefix alone). False: prefix-only fine-tuning."""
    prompt_file: str | None = None
    """Inference DermPrompts for ``prompt=dermprompt``: a text file (one per line) or a CSV with a ``caption`` column
    (and optionally ``class``, a class name or word, to draw per class). None: recycled training captions."""
    rephrase_model: str | None = None
    """A local transformers chat LLM folder (thesis: Llama-3.2-3B-Instruct) that writes new inference DermPrompts
    from ``rephrase_examples`` random training captions each (spec section 1.2); None: no rephrasing."""
    rephrase_examples: int = 5
    """Existing DermPrompts shown to the LLM per new one (spec 1.2 [I]: about 5)."""
    rephrase_count: int = 200
    """New DermPrompts written per class (or in all when the captions have no class) by ``rephrase_model``."""
    use_placeholders: bool = True
    """Prompts with ``<lesion>``/``<skin>`` (DiDGen) or the plain words (SD-Finetune / DreamBooth)."""
    prefix_only_rate: float = 0.2
    """Probability of the prefix-only training prompt (code: 0.2)."""
    steps: int = 20000
    """Fine-tuning steps (paper: 20 000)."""
    batch_size: int = 4
    """Fine-tuning batch size (paper: 4)."""
    lr: float = 1e-5
    """AdamW learning rate (paper: 1e-5)."""
    warmup_steps: int = 500
    """Linear warm-up steps of the constant schedule (code: 500)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (code: 1e-2)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (code: 1.0)."""
    attn_weight: float = 0.1
    """alpha of L = L_rec + alpha L_attn (paper: 0.1; 0 gives plain fine-tuning)."""
    train_seed: int = 42
    """Fine-tuning seed (code: 42), mixed with the run seed."""
    ca_res: int = 16
    """Side of the cross-attention maps used (SD 2.1-base at 512 px: 16; mini-sd: 8)."""
    sa_res: int = 32
    """Side of the self-attention maps used (SD 2.1-base at 512 px: 32; mini-sd: 16)."""
    prompt: Literal["prefix", "dermprompt", "condition"] = "prefix"
    """Generation prompt: ``prefix`` (the code default; the task's prompt is ignored), ``condition`` (the task's
    prompt, e.g. derm-cls's class prompt; the prefix when the task gives none), or ``dermprompt`` (that prompt
    followed by a DermPrompt: from ``prompt_file``, else written by ``rephrase_model``, else a recycled training
    caption, of the condition's class when the captions have classes). Paper profile: ``condition``."""
    sampler: str = "pndm"
    """Sampler (code: the SD 2.1-base default PNDM)."""
    sample_steps: int = 50
    """Sampling steps (code: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight (code: 7.5)."""
    ca_guidance: bool = True
    """Use L_CA in layout guidance (Table 4.7 ablation: False)."""
    sa_guidance: bool = True
    """Use L_SA in layout guidance."""
    eta: float = 20.0
    """Guidance step size (paper: 20)."""
    eta_range: tuple[float, float] = (1.0, 0.5)
    """sqrt-linspace decay of the step size (code)."""
    guidance_fraction: float = 0.5
    """Fraction of the sampling iterations with guidance (paper: first 50 %)."""
    softmax_scale: float = 100.0
    """Token softmax temperature of the CA maps (code: 100)."""
    gaussian_smoothing: bool = False
    """Smooth the CA maps (thesis text: yes; released code: no)."""
    tau: int = 4
    """Matrix power of A_S in the mask read-out (paper: 4)."""
    closing_kernel: int = 5
    """Closing element diameter at the output side (thesis: closing, size unstated; code: none = 0)."""
    largest_component: bool = False
    """Keep only the largest connected component of the read-out mask."""
    readout_step: Literal["last", "second-to-last"] = "last"
    """Iteration of the read-out (paper: the final step; code with PNDM: the second-to-last)."""
    generate_batch: int = 8
    """Pairs generated together."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if not 0 <= self.prefix_only_rate <= 1:
            raise ConfigError(f"method.prefix_only_rate must be in [0, 1], got {self.prefix_only_rate}")
        if self.attn_weight > 0 and not self.use_placeholders:
            raise ConfigError("method.attn_weight > 0 needs method.use_placeholders (the loss reads <lesion>/<skin>)")


class DermT2I(GeneratorBase):
    """Fine-tunes a text-to-image UNet on image-mask pairs (with the region-aware attention loss when
    ``attn_weight > 0``) and builds the generation prompts; subclasses implement ``generate``.

    The fitted state is the UNet's weights and the training captions (``unet.safetensors`` and ``didgen.json``: the
    file name DiDGen's cached fits carry, which ZestGuide and Attn-Refocus load through ``fit_from``).
    """

    Config = DermT2IConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({
        "prompt", "sampler", "sample_steps", "guidance_scale", "ca_guidance", "sa_guidance", "eta", "eta_range",
        "guidance_fraction", "softmax_scale", "gaussian_smoothing", "tau", "closing_kernel", "largest_component",
        "readout_step", "generate_batch"})
    #: Options whose profiles differ only in the default choice (paper: the task's prompt; mini: the prefix): a
    #: record without stated overrides may hold any value (bench.leaderboard.checks.check_profile).
    user_choices: ClassVar[frozenset[str]] = frozenset({"prompt"})
    #: Options added after the mini records were shipped (issue 22): left out of the run id while at their default.
    options_added_later: ClassVar[frozenset[str]] = frozenset({
        "require_captions", "prompt_file", "rephrase_model", "rephrase_examples", "rephrase_count"})
    #: The method's name in the error of a missing backbone folder (default: the class name).
    backbone_owner: ClassVar[str | None] = None

    def __init__(self, config: DermT2IConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.placeholder_ids: list[int] = []
        self.captions: list[str] = []
        self.caption_labels: list[int | None] = []
        self.inference_prompts: list[tuple[str, Any]] | None = None
        self.log: list[dict[str, float]] = []

    # -- model -------------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import add_frozen_placeholders, load_backbone

            self.parts = load_backbone(self.config.backbone, owner=self.backbone_owner or type(self).__name__)
            self.placeholder_ids = add_frozen_placeholders(self.parts)

    def _caption_parts(self, samples: Sequence[Sample]) -> list[tuple[str | None, str | None]]:
        """Per sample: (the task's class sentence or None, its DermPrompt caption without prefix or None)."""
        from bench.diffusion.dermprompt import read_caption_file, strip_prefix

        table = read_caption_file(self.config.caption_file) if self.config.caption_file else None
        out: list[tuple[str | None, str | None]] = []
        for s in samples:
            sentence = s.meta.get("class_sentence") or None
            if table is not None:
                caption = table.get(str(s.meta.get("id")))
            else:
                caption = strip_prefix(s.prompt) if s.prompt else None
                if caption and sentence and caption.startswith(sentence):  # derm-cls's class caption
                    caption = caption[len(sentence):].strip()
            out.append((sentence, strip_prefix(caption) if caption else None))
        return out

    def _captions_for(self, samples: Sequence[Sample]) -> list[str | None]:
        """Training captions without prefix: the class sentence (derm-cls) followed by the DermPrompt caption."""
        return [" ".join(t for t in parts if t) or None for parts in self._caption_parts(samples)]

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.diffusion import t2i_finetune  # looked up at call time: tests patch t2i_finetune.finetune
        from bench.tasks.common import resize_image, resize_mask

        self._ensure_model()
        c = self.config
        images = torch.stack([resize_image(s.image, c.resolution) for s in train])
        masks = torch.stack([resize_mask(s.mask, c.resolution).float() if s.mask is not None
                             else torch.zeros(c.resolution, c.resolution) for s in train])
        if c.attn_weight > 0 and not all(s.mask is not None for s in train):
            raise FitSetError("DiDGen's attention loss needs a mask for every training image (derm-cls on ISIC 2018 "
                             "Task 3: task.fit_masks=ham10000 reads HAM10000's; else set method.attn_weight=0)")
        parts = self._caption_parts(train)
        if c.require_captions and not any(caption for _, caption in parts):
            from bench.errors import UserInputError

            raise UserInputError(
                f"{type(self).__name__} fine-tunes on DermPrompt captions and none of the {len(train)} training images "
                f"has one: pass method.caption_file=CSV (make it with `bench derm caption --dataset D --data-root DIR "
                f"--model VLM_DIR --out captions.csv`), or set method.require_captions=false to fine-tune on the "
                f"prefix alone")
        captions = [" ".join(t for t in pair if t) or None for pair in parts]
        self.captions = [caption for _, caption in parts if caption]
        self.caption_labels = [None if s.label is None else int(s.label) for s, (_, cap) in zip(train, parts) if cap]
        self.inference_prompts = None
        self.log = t2i_finetune.finetune(self.parts, images, masks, captions, self.placeholder_ids, c,
                            seed=derive_seed(c.train_seed, ctx.seed), advance=ctx.progress("fine-tune", c.steps))

    def _prompt(self, cond: Condition, index: int) -> str:
        from bench.diffusion.dermprompt import PLAIN_PREFIX, PREFIX, with_placeholders

        c = self.config
        prefix = PREFIX if c.use_placeholders else PLAIN_PREFIX
        if c.prompt == "prefix":
            return prefix
        head = prefix
        if cond.prompt:  # the task's prompt (derm-cls: prefix + class sentence; derm-quality: the prefix)
            text = cond.prompt
            if not c.use_placeholders:
                text = text.replace("<lesion>", "lesion").replace("<skin>", "skin")
            head = text if text.startswith(prefix) else f"{prefix} {text}"
        if c.prompt == "condition":
            return head
        caption = self._draw_dermprompt(cond, index)
        return f"{head} {with_placeholders(caption) if c.use_placeholders else caption}"

    def _batches(self, conditions: Sequence[Condition], ctx: RunContext
                 ) -> Iterator[tuple[Sequence[Condition], list[str], list[int]]]:
        """Conditions in batches of ``generate_batch`` with their prompts and per-index seeds (a sample's seed
        depends on its condition index only, so batching never changes it)."""
        c = self.config
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            yield chunk, [self._prompt(cond, i) for cond, i in zip(chunk, index)], [derive_seed(ctx.seed, 17, i) for i in index]

    def _dermprompt_pool(self) -> list[tuple[str, Any]]:
        """(DermPrompt, class or None) pairs inference draws from: the prompt file, else the LLM's rephrasings,
        else the training captions (recycled: the thesis's LLM-written new DermPrompts need ``rephrase_model``)."""
        if self.inference_prompts is None:
            from bench.diffusion.dermprompt import read_prompt_file

            c = self.config
            if c.prompt_file:
                self.inference_prompts = read_prompt_file(c.prompt_file)
            elif c.rephrase_model:
                from bench.diffusion.rephrase import rephrase_captions

                self.inference_prompts = rephrase_captions(c.rephrase_model, self.captions, self.caption_labels,
                                                           c.rephrase_examples, c.rephrase_count, seed=c.train_seed)
            else:
                self.inference_prompts = list(zip(self.captions, self.caption_labels or [None] * len(self.captions)))
                if self.inference_prompts:
                    logger.info("DermPrompt: inference prompts are %d recycled training captions (no "
                                "method.prompt_file or method.rephrase_model)", len(self.inference_prompts))
            if not self.inference_prompts:
                from bench.errors import UserInputError

                raise UserInputError(
                    "method.prompt=dermprompt, but there is no DermPrompt to draw from (the training images had no "
                    "captions and no method.prompt_file is given): pass method.caption_file=CSV at fit (make it with "
                    "`bench derm caption --dataset D --data-root DIR --model VLM_DIR --out captions.csv`) or "
                    "method.prompt_file=FILE")
        return self.inference_prompts

    def _draw_dermprompt(self, cond: Condition, index: int) -> str:
        """A DermPrompt of the condition's class (its label, or its ``class_name`` for a prompt file's ``class``
        column) when the pool has some, else of any class; seeded by the condition's index."""
        pool = self._dermprompt_pool()
        keys = {k for k in (cond.label, cond.meta.get("class_name")) if k is not None}
        same = [text for text, key in pool if key is not None and key in keys]
        return random.Random(index).choice(same or [text for text, _ in pool])

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.parts.unet.state_dict().items()}, str(path / "unet.safetensors"))
        (path / "didgen.json").write_text(json.dumps({"config": asdict(self.config), "captions": self.captions,
                                                      "caption_labels": self.caption_labels,
                                                      "log": self.log[-50:]}, default=str))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self._ensure_model()
        self.parts.unet.load_state_dict(load_file(str(path / "unet.safetensors")))
        saved = json.loads((path / "didgen.json").read_text())
        self.captions = saved["captions"]
        self.caption_labels = saved.get("caption_labels") or [None] * len(self.captions)
        self.inference_prompts = None


@dataclass(frozen=True)
class PlainT2IConfig(DermT2IConfig):
    """`DermT2IConfig` without the attention loss and placeholders (SD-Finetune, DreamBooth; the same fields in the
    same order, four defaults changed)."""

    use_placeholders: bool = False
    """Plain ``lesion``/``skin`` words (the baseline has no placeholder tokens)."""
    attn_weight: float = 0.0
    """No region-aware loss."""
    require_captions: bool = False
    """Captions are used when present; the baseline is defined by the prefix prompt (thesis Exp. 1), so none is
    required."""
    prompt: Literal["prefix", "dermprompt", "condition"] = "prefix"
    """Generation prompt: ``"An image of lesion on skin."`` (Table 4.1), a training caption, or the task's prompt."""


class PlainT2I(DermT2I):
    """The backbone fine-tuned with the plain denoising loss on plain-word prompts (no placeholder tokens, text
    encoder frozen), sampled from text only with classifier-free guidance: images, no masks (thesis ch. 4's
    "SD-Finetune" baseline, which DreamBooth extends)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset({"prompt", "label"}),
                                                        returns=frozenset({"image"}))
    Config = PlainT2IConfig

    def _ensure_model(self) -> None:
        if self.parts is None:
            from bench.diffusion.dermprompt import load_backbone

            self.parts = load_backbone(self.config.backbone, owner=self.backbone_owner or type(self).__name__)
            self.parts.text_encoder.requires_grad_(False)
            self.placeholder_ids = []

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample

        self._ensure_model()
        c = self.config
        parts = self.parts
        with torch.no_grad():
            uncond = parts.encode_prompt([""]).float()
        shape = parts.sample_shape(1)[1:]
        for chunk, prompts, seeds in self._batches(conditions, ctx):
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
            sched = make_scheduler(c.sampler, parts.scheduler)
            with torch.no_grad():
                cond = parts.encode_prompt(prompts).float()
                sched.set_timesteps(c.sample_steps)
                images = sample(parts.unet, cond, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents * sched.init_noise_sigma)
            for k, cond_k in enumerate(chunk):
                yield Sample(image=images[k].clamp(0, 1), label=cond_k.label, prompt=prompts[k])


def generate_with_condition_masks(model: Any, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
    """DiDGen's batching, prompts and per-index seeds around ``model.generate_images(prompts, masks, seeds)`` (the
    mask-guided samplers ZestGuide and Attn-Refocus); the returned mask is the conditioning mask at the image side
    (these baselines read no mask out)."""
    from bench.tasks.common import resize_mask

    missing = [k for k, cond in enumerate(conditions) if cond.mask is None]
    if missing:
        raise ValueError(f"{type(model).__name__} needs a mask in every condition; condition {missing[0]} has none")
    model._ensure_model()
    for chunk, prompts, seeds in model._batches(conditions, ctx):
        images = model.generate_images(prompts, [cond.mask for cond in chunk], seeds)
        for k, cond in enumerate(chunk):
            mask = resize_mask(cond.mask, images.shape[-1])
            meta = {"prompt": prompts[k], "source_id": cond.meta.get("source_id")}
            yield Sample(image=images[k], mask=mask, label=cond.label, prompt=prompts[k], meta=meta)
