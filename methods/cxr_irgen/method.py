"""CXR-IRGen (thesis chapter 6; Shentu & Al Moubayed, WACV 2024; code junjie-shentu/CXR-IRGen).

Fit: (I) the vision module (`vision`): a text-to-image diffusion model fine-tuned on label prompts, with the
reference image embedding (RIE) when ``rie``; (II) the language module (`language`): a BART autoencoder with a
single-vector bottleneck on the training reports' ``report_section`` texts, then a ViT prior from the image
embedding to that text vector. Generate: from a label vector, an image (label prompt + reference image, CFG
sampling) and its report (prior on the denoised latent, BART decoding); from a given image (``reference`` field,
the task's ``input=real``), its report only.

Profiles: paper = SD v1.4, CLIP ViT-B/32 vision, bart-base from local folders (nothing is downloaded); mini =
mini-sd (32 px pixel space), mini-clip's vision tower, and a small BART trained from scratch with a BPE learnt on
the training reports. Every thesis-vs-code choice is an option listed in README.md.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

from . import language, vision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CxrIrgenConfig:
    """CXR-IRGen options (defaults: the paper profile; [C] code value, [T] thesis value, [I] our choice)."""

    # vision module
    base_model: str = "stable-diffusion-v1-4"
    """Diffusion model: a local diffusers folder (paper: CompVis/stable-diffusion-v1-4 saved locally) or ``mini-sd``."""
    clip_vision: str = "clip-vit-base-patch32"
    """Reference-image encoder: a local transformers CLIPVisionModel folder (openai/clip-vit-base-patch32) or
    ``mini-clip`` (its vision tower)."""
    backbone: Literal["unet", "uvit"] = "unet"
    """Denoising backbone: the base model's U-Net, or a U-ViT (trained from the random init here: no U-ViT weights)."""
    rie: bool = True
    """Append the reference image embedding to the prompt (Table 6.1 'with RIE')."""
    steps: int = 5000
    """Vision fine-tuning steps (thesis: 5k and 10k)."""
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    resolution: int = 256
    """Training / generation side in pixels [C: 256]."""
    prompt_wording: Literal["thesis", "code"] = "thesis"
    """Label-prompt template: thesis ('with ..., without ..., and unclear about ...') or code ('... and with uncertain')."""
    reference_fallback: Literal["closest", "zeros"] = "closest"
    """No training image with the same label: the closest label [T, Algorithm 4] or a zero embedding [C]."""
    uvit_dim: int = 1024
    uvit_depth: int = 20
    uvit_heads: int = 16
    uvit_patch: int = 2
    sampler: str = "pndm"
    sample_steps: int = 50
    guidance_scale: float = 7.5
    condition_dropout: float = 0.0
    """Share of vision fine-tuning items whose condition is replaced by the CFG branch's (the empty prompt, no image
    token) [C: 0, the condition is never dropped, yet CFG 7.5 samples from an unconditional branch fine-tuning never
    saw; thesis silent]; 0.1 is Stable Diffusion's own recipe (README: the mini label-following check)."""
    generate_batch: int = 20
    # language module
    report_model: Literal["cxr-irgen", "r2gen", "m2trans", "retrieval"] = "cxr-irgen"
    """Report generator of the pipeline (Table 6.4 rows): CXR-IRGen's language module, or a report baseline (its
    config for the run's profile, ``report_section`` passed on) fitted on the same training set and given the
    generated images."""
    report_section: Literal["findings", "findings+impression"] = "findings"
    """Training texts: findings (F) or findings and impression as separate texts (F+I) [T]."""
    bart: str = "bart-base"
    """BART: a local transformers folder (facebook/bart-base with its tokenizer) or ``scratch`` (random init, BPE
    learnt on the training reports)."""
    vocab_size: int = 2000
    """BPE vocabulary of ``bart=scratch``."""
    bart_d_model: int = 768
    bart_layers: int = 6
    bart_heads: int = 12
    bart_ffn: int = 3072
    max_length: int = 512
    """Token length of a report (padded / truncated to it) [C: 512]."""
    pooling: Literal["mean", "bos", "eos"] = "mean"
    """Representative text vector [T: mean of all tokens; Fig. 6.5 ablation: bos, eos]."""
    loss_on_padding: bool = True
    """[C] the reconstruction loss includes the pad positions (no ignore_index)."""
    bart_epochs: int = 20
    bart_batch_size: int = 8
    bart_lr: float = 5e-5
    prior_input: Literal["latent", "image"] = "latent"
    """Prior input: the diffusion latent [T] or the image (Table 6.5 'Input image'; patch scaled to keep the token count)."""
    prior_layers: int = 12
    prior_heads: int = 12
    prior_patch: int = 2
    prior_loss: Literal["mse+cos", "mse", "cosine"] = "mse+cos"
    """Eq. 6.3 (MSE + lambda (1 - cos)), or one term (Table 6.5)."""
    prior_lambda: float = 0.01
    prior_epochs: int = 20
    prior_batch_size: int = 16
    prior_lr: float = 5e-5
    decoding: Literal["sample", "greedy", "beam"] = "sample"
    """[C] ancestral sampling; greedy and beam search as options."""
    num_beams: int = 3
    stop_at_eos: bool = False
    """[C] no early stop: the code decodes a fixed number of tokens."""
    max_new_tokens: int = 512
    report_batch: int = 64


class CxrIrgen(GeneratorBase):
    """Image-report pairs from CheXpert label vectors; reports for given images."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"labels", "reference"}, returns={"image", "report"},
                                                        requires={"labels"})
    Config = CxrIrgenConfig
    version: ClassVar[str] = "1"
    options_added_later: ClassVar[frozenset[str]] = frozenset({"condition_dropout"})
    generation_only: ClassVar[frozenset[str]] = frozenset(
        {"sampler", "sample_steps", "guidance_scale", "generate_batch", "decoding", "num_beams", "stop_at_eos",
         "max_new_tokens", "report_batch"})

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        c = self.config
        from bench.config import ConfigError

        if c.backbone == "uvit" and c.uvit_dim % c.uvit_heads:
            raise ConfigError(f"method.uvit_dim={c.uvit_dim} must be a multiple of method.uvit_heads={c.uvit_heads}")
        if not 0.0 <= c.condition_dropout < 1.0:
            raise ConfigError(f"method.condition_dropout must be in [0, 1), got {c.condition_dropout}")
        self.parts: Any = None
        self.encoders: vision.ClipEncoders | None = None
        self.denoiser: Any = None
        self.bank_keys: torch.Tensor | None = None
        self.bank_vectors: torch.Tensor | None = None
        self.tokenizer: Any = None
        self.ae: language.ReportAutoencoder | None = None
        self.prior: Any = None
        self.reporter: Any = None

    # -- components ---------------------------------------------------------------------------------
    def _load_base(self) -> None:
        from bench.diffusion.models import load_mini_clip, load_mini_sd, load_sd

        c = self.config
        if c.base_model == "mini-sd":
            self.parts = load_mini_sd()
        else:
            if not Path(c.base_model).expanduser().is_dir():
                raise FileNotFoundError(f"cxr-irgen base model folder not found: {c.base_model} (a diffusers Stable "
                                        "Diffusion v1.4 folder, or 'mini-sd')")
            self.parts = load_sd(Path(c.base_model).expanduser())
        self.parts.text_encoder.requires_grad_(False)
        if c.clip_vision == "mini-clip":
            clip = load_mini_clip()
            vm, size = clip.model.vision_model, clip.image_size
        else:
            from transformers import CLIPVisionModel

            if not Path(c.clip_vision).expanduser().is_dir():
                raise FileNotFoundError(f"cxr-irgen CLIP vision folder not found: {c.clip_vision} "
                                        "(openai/clip-vit-base-patch32 saved locally, or 'mini-clip')")
            vm = CLIPVisionModel.from_pretrained(str(Path(c.clip_vision).expanduser()), local_files_only=True).vision_model
            size = int(vm.config.image_size)
        vm.eval().requires_grad_(False)
        self.encoders = vision.ClipEncoders(self.parts.tokenizer, self.parts.text_encoder, vm, size)
        if c.backbone == "unet":
            self.denoiser = self.parts.unet
        else:
            from .uvit import UViT, UViTDenoiser

            side = c.resolution // self.parts.codec.factor
            chans = int(self.parts.unet.config.in_channels)
            self.denoiser = UViTDenoiser(UViT(side, c.uvit_patch, chans, c.uvit_dim, c.uvit_depth, c.uvit_heads),
                                         int(self.parts.text_encoder.config.hidden_size), side)
            self.parts.unet = None  # the U-Net is not used

    def _prior_shape(self) -> tuple[int, int, int]:
        """(channels, side, patch) of the prior's input."""
        c = self.config
        side = c.resolution // self.parts.codec.factor
        if c.prior_input == "latent":
            return int(self.parts.codec.channels), side, c.prior_patch
        return 3, c.resolution, c.prior_patch * self.parts.codec.factor

    def _new_language(self, tokenizer: Any) -> None:
        c = self.config
        if c.bart == "scratch":
            bart = language.make_bart(tokenizer, c.bart_d_model, c.bart_layers, c.bart_heads, c.bart_ffn, c.max_length)
        else:
            from transformers import BartForConditionalGeneration

            bart = BartForConditionalGeneration.from_pretrained(str(Path(c.bart).expanduser()), local_files_only=True)
        self.ae = language.ReportAutoencoder(bart, c.pooling)
        ch, side, patch = self._prior_shape()
        self.prior = language.make_prior(side, ch, patch, int(bart.config.d_model), c.prior_layers, c.prior_heads)
        self.tokenizer = tokenizer

    def _texts(self, sample: Sample) -> tuple[list[str], str]:
        """(stage-1 training texts, prior target text) of a training sample."""
        findings, impression = sample.meta.get("findings", ""), sample.meta.get("impression", "")
        if "findings" not in sample.meta and "impression" not in sample.meta:
            findings = sample.report or ""
        if self.config.report_section == "findings":
            return ([findings] if findings else []), findings
        return [t for t in (findings, impression) if t], " ".join(t for t in (findings, impression) if t)

    def _prior_input(self, images01: torch.Tensor | None = None, latents: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if c.prior_input == "latent":
            if latents is not None:
                return latents.float()
            with torch.no_grad():
                return self.parts.codec.encode(vision.images_at(images01, c.resolution)).float()
        return vision.images_at(images01, c.resolution) * 2 - 1

    # -- fit --------------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        c = self.config
        samples = [train[i] for i in range(len(train))]
        if not samples or any(s.image is None or s.labels is None for s in samples):
            raise FitSetError("cxr-irgen fits on samples with an image and a label vector")
        torch.manual_seed(derive_seed(ctx.seed, 71))
        self._load_base()
        images = vision.images_at(torch.stack([s.image for s in samples]), c.resolution)
        keys = torch.stack([s.labels for s in samples]).float()
        # (I) vision module
        self.bank_keys = keys
        self.bank_vectors = self._pool_vectors(images)
        bank = vision.ReferenceBank(keys, images, c.reference_fallback)
        prompts = [vision.label_to_prompt(vision.binary_labels(k), c.prompt_wording) for k in keys]
        refs = self._ref_vectors(keys, bank) if c.rie else None

        def labelled(idx: torch.Tensor) -> torch.Tensor:
            return vision.condition(self.encoders, [prompts[int(i)] for i in idx],
                                    None if refs is None else refs[idx], c.backbone)

        conds = vision.with_condition_dropout(labelled, self.encoders, c.backbone, c.condition_dropout,
                                              derive_seed(ctx.seed, 73))

        advance = ctx.progress("cxr-irgen vision", c.steps)
        losses = vision.train_denoiser(self.denoiser, self.parts.scheduler, self.parts.codec, images, conds, c.steps,
                                       c.batch_size, c.lr, c.weight_decay, derive_seed(ctx.seed, 72), advance)
        self.fit_log = {"vision_loss_last50": _mean(losses[-50:])}
        if c.report_model != "cxr-irgen":
            self.reporter = self._make_reporter(ctx.profile)
            self.reporter.fit(train, ctx)
            return
        # (II) language module
        texts, targets, keep = [], [], []
        seen: set[str] = set()
        for i, s in enumerate(samples):
            train_texts, target = self._texts(s)
            for t in train_texts:
                if t not in seen:
                    seen.add(t)
                    texts.append(t)
            if target:
                keep.append(i)
                targets.append(target)
        if not texts:
            raise FitSetError(f"no training sample has a {c.report_section} text")
        if c.bart == "scratch":
            tokenizer = language.train_tokenizer(texts, c.vocab_size, Path(ctx.work_dir) / "tokenizer")
        else:
            tokenizer = language.load_tokenizer(Path(c.bart).expanduser())
        self._new_language(tokenizer)
        ids, mask = language.tokenize(tokenizer, texts, c.max_length)
        n_batches = (len(ids) + c.bart_batch_size - 1) // c.bart_batch_size
        ae_losses = language.train_autoencoder(self.ae, ids, mask, c.bart_epochs, c.bart_batch_size, c.bart_lr,
                                               c.weight_decay, c.loss_on_padding, derive_seed(ctx.seed, 73),
                                               ctx.progress("cxr-irgen BART", c.bart_epochs * n_batches))
        tids, tmask = language.tokenize(tokenizer, targets, c.max_length)
        with torch.no_grad():
            target_vecs = torch.cat([self.ae.encode(tids[i:i + 64], tmask[i:i + 64]) for i in range(0, len(tids), 64)])
            inputs = torch.cat([self._prior_input(images[keep][i:i + 64]) for i in range(0, len(keep), 64)])
        n_batches = (len(inputs) + c.prior_batch_size - 1) // c.prior_batch_size
        prior_losses = language.train_prior(self.prior, inputs, target_vecs, c.prior_epochs, c.prior_batch_size,
                                            c.prior_lr, c.weight_decay, c.prior_loss, c.prior_lambda,
                                            derive_seed(ctx.seed, 74), ctx.progress("cxr-irgen prior", c.prior_epochs * n_batches))
        self.fit_log = {"vision_loss_first": losses[:1], "vision_loss_last50": _mean(losses[-50:]),
                        "bart_loss_last50": _mean(ae_losses[-50:]), "prior_loss_last50": _mean(prior_losses[-50:]),
                        "n_texts": len(texts), "n_prior_pairs": len(keep)}
        logger.info("cxr-irgen fit: %s", self.fit_log)

    def _make_reporter(self, profile: str, values: dict[str, Any] | None = None) -> Any:
        """The report baseline of ``report_model`` with its profile config (or ``values``) and our report_section."""
        from bench.config import build, method_config_file, profile_section
        from bench.registry import METHODS

        cls = METHODS.get(self.config.report_model)
        if values is None:
            values = profile_section(method_config_file(cls), profile)
            if "report_section" in {f.name for f in __import__("dataclasses").fields(cls.Config)}:
                values = {**values, "report_section": self.config.report_section}
        return cls(build(cls.Config, values, f"method.report_model={self.config.report_model}"))

    def _pool_vectors(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encoders.images(images[i:i + 128]) for i in range(0, len(images), 128)])

    def _ref_vectors(self, labels: torch.Tensor, bank: vision.ReferenceBank | None = None) -> torch.Tensor:
        """RIE vectors (B, D) of label vectors (zeros where the fallback gives none)."""
        bank = bank or vision.ReferenceBank(self.bank_keys, self.bank_keys, self.config.reference_fallback)
        out = torch.zeros(len(labels), self.bank_vectors.shape[1])
        for k, lab in enumerate(labels):
            idx = bank.lookup(lab)
            if idx is not None:
                out[k] = self.bank_vectors[idx]
        return out

    # -- save / load ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.denoiser.state_dict().items()}, str(path / "denoiser.safetensors"))
        save_file({"keys": self.bank_keys.contiguous(), "vectors": self.bank_vectors.contiguous()},
                  str(path / "references.safetensors"))
        if self.reporter is not None:
            (path / "reporter").mkdir()
            self.reporter.save(path / "reporter")
            (path / "reporter.json").write_text(json.dumps(asdict(self.reporter.config)))
            (path / "fit.json").write_text(json.dumps({"config": asdict(self.config), **self.fit_log}, default=str))
            return
        state = {f"bart.{k}": v for k, v in self.ae.bart.state_dict().items()}
        state.update({f"prior.{k}": v for k, v in self.prior.state_dict().items()})
        shared = {"bart.model.shared.weight", "bart.lm_head.weight", "bart.model.encoder.embed_tokens.weight",
                  "bart.model.decoder.embed_tokens.weight"}
        kept_shared = False
        clean = {}
        for k, v in state.items():
            if k in shared:
                if kept_shared:
                    continue
                kept_shared = True
                k = "bart.model.shared.weight"
            clean[k] = v.contiguous()
        save_file(clean, str(path / "language.safetensors"))
        self.tokenizer.save_pretrained(str(path / "tokenizer"))
        (path / "fit.json").write_text(json.dumps({"config": asdict(self.config), **getattr(self, "fit_log", {})},
                                                  indent=1, default=str))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self._load_base()
        self.denoiser.load_state_dict(load_file(str(path / "denoiser.safetensors")))
        self.denoiser.eval().requires_grad_(False)
        refs = load_file(str(path / "references.safetensors"))
        self.bank_keys, self.bank_vectors = refs["keys"], refs["vectors"]
        if self.config.report_model != "cxr-irgen":
            self.reporter = self._make_reporter("", json.loads((path / "reporter.json").read_text()))
            self.reporter.load(path / "reporter")
            return
        self._new_language(language.load_tokenizer(path / "tokenizer"))
        state = load_file(str(path / "language.safetensors"))
        bart_state = {k[5:]: v for k, v in state.items() if k.startswith("bart.")}
        missing, unexpected = self.ae.bart.load_state_dict(bart_state, strict=False)
        bad = [m for m in missing if not m.endswith(("embed_tokens.weight", "lm_head.weight"))]
        if bad or unexpected:
            raise ValueError(f"{path}: BART state does not match (missing {bad[:3]}, unexpected {unexpected[:3]})")
        self.ae.bart.tie_weights()
        self.prior.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("prior.")})
        self.ae.eval().requires_grad_(False)
        self.prior.eval().requires_grad_(False)

    # -- generate ---------------------------------------------------------------------------------------
    def reports_from(self, prior_inputs: torch.Tensor, seed: int) -> list[str]:
        """Reports of prior inputs (image embeddings): prior -> text vector -> BART decoding."""
        c = self.config
        out: list[str] = []
        for start in range(0, len(prior_inputs), c.report_batch):
            with torch.no_grad():
                memory = self.prior(pixel_values=prior_inputs[start:start + c.report_batch]).pooler_output
            out += language.decode(self.ae, self.tokenizer, memory, c.decoding, c.max_new_tokens, c.num_beams,
                                   c.stop_at_eos, derive_seed(seed, start))
        return out

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample

        c = self.config
        for start in range(0, len(conditions), c.generate_batch):
            chunk = conditions[start:start + c.generate_batch]
            index = [int(cond.meta.get("index", start + k)) for k, cond in enumerate(chunk)]
            given = [cond.reference is not None for cond in chunk]
            if all(given):  # reports for given images (task input=real)
                if self.reporter is not None:
                    reports = [s.report for s in self.reporter.generate(list(chunk), ctx)]
                else:
                    imgs = torch.stack([vision.images_at(cond.reference[None], c.resolution)[0] for cond in chunk])
                    reports = self.reports_from(self._prior_input(imgs), derive_seed(ctx.seed, 19, index[0]))
                for cond, rep in zip(chunk, reports):
                    yield Sample(report=rep, labels=cond.labels.clone())
                continue
            if any(given):
                raise ValueError("cxr-irgen: a generation batch mixes conditions with and without an image")
            labels = torch.stack([cond.labels.float() for cond in chunk])
            prompts = [vision.label_to_prompt(vision.binary_labels(k), c.prompt_wording) for k in labels]
            refs = self._ref_vectors(labels) if c.rie else None
            with torch.no_grad():
                cond = vision.condition(self.encoders, prompts, refs, c.backbone)
                uncond = vision.unconditional(self.encoders, cond, c.backbone)
            shape = (int(self.denoiser.config.out_channels), c.resolution // self.parts.codec.factor,
                     c.resolution // self.parts.codec.factor)
            noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(derive_seed(ctx.seed, 17, i)))
                                 for i in index])
            sched = make_scheduler(c.sampler, self.parts.scheduler)
            sched.set_timesteps(c.sample_steps)
            latents = sample(self.denoiser, cond, sched, self.parts.codec, steps=c.sample_steps,
                             guidance_scale=c.guidance_scale, uncond=uncond, latents=noise * sched.init_noise_sigma,
                             decode=False)
            with torch.no_grad():
                images = self.parts.codec.decode(latents).float().clamp(0, 1)
            if self.reporter is not None:
                given_images = [Condition(reference=im, meta={"index": i}) for im, i in zip(images, index)]
                reports = [s.report for s in self.reporter.generate(given_images, ctx)]
            else:
                inputs = self._prior_input(images, latents if c.prior_input == "latent" else None)
                reports = self.reports_from(inputs, derive_seed(ctx.seed, 19, index[0]))
            for k, cond_k in enumerate(chunk):
                yield Sample(image=images[k].clone(), report=reports[k], labels=cond_k.labels.clone(), prompt=prompts[k])


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None
