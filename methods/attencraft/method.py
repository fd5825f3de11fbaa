"""attencraft: attention-based disentanglement of several concepts learnt from one image (thesis chapter 3;
spec ``research/ch3_attencraft.md``; README.md lists every thesis-vs-code decision and its option).

``fit`` customises the base model independently on every scene of the fit set (one image with N concepts,
``meta``: ``scene``, ``placeholders``, ``class_words``): Stage I builds one mask per concept from the attention of
one UNet pass (Eq. 3.2-3.3) and single-concept sampling ratios from masked attention scores (Eq. 3.4-3.5); Stage II
trains the cross-attention keys/values (and the placeholder embeddings) with feature-retaining training
(Eq. 3.6-3.8). ``generate`` samples each condition with its scene's weights (``Condition.meta["scene"]``); on the
condition flagged ``meta["report_masks"]`` the sample carries the learned masks as ``meta["attention_masks"]``
(the concept task scores them against true masks).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttenCraftConfig:
    """Hyperparameters (thesis section 3.3 / spec 1.7; [C] = the reference code's value, [I] = inferred)."""

    backbone: str = "stable-diffusion-2-1-base"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (thesis: SD 2.1-base)."""
    resolution: int = 512
    """Training and sampling side in pixels (images squashed, no augmentation [C])."""
    steps: int = 300
    """Training steps per scene (thesis 300; code 500)."""
    lr: float = 1e-4
    """AdamW learning rate (thesis 1e-4; code 5e-5 x scale_lr = 1e-4)."""
    weight_decay: float = 1e-2
    """AdamW weight decay [C]."""
    max_grad_norm: float = 1.0
    """Gradient clipping [C]."""
    omega: float = 0.3
    """Probability of a multi-concept step (thesis 0.3, ablated 0.1-0.5 in Table 3.2)."""
    alpha: float = 0.01
    """Weight of L_attn on single-concept steps (Eq. 3.8)."""
    use_rec_loss: bool = False
    """Also back-propagate L_rec on multi-concept steps (Table 3.2's "w/ L_rec" ablation)."""
    sampling_ratio: Literal["adaptive", "equal", "no-softmax"] = "adaptive"
    """Single-concept sampling ratios: Eq. 3.5 (thesis), 1/N, or 1 - S/sum S (Table 3.3's ablations)."""
    nu: float = 2.0
    """Cross-attention suppression power (Eq. 3.2)."""
    tau: int = 4
    """Self-attention enhancement power (Eq. 3.2)."""
    self_power_mode: Literal["matrix", "elementwise"] = "matrix"
    """A_S^tau as a matrix power (code, Dataset Diffusion; spec's recommendation) or element-wise (thesis text)."""
    self_enhancement: bool = True
    """Propagate the cross maps through self-attention (Eq. 3.2; False: Fig. 3.8's "w/o self-attention enhancement",
    used by the mini profile because mini-sd's self-attention does not group object pixels, see README)."""
    gamma: float = 0.1
    """Delta-masking threshold on min-max normalised maps (Eq. 3.3)."""
    use_sot_background: bool = True
    """The start-of-text token's propagated map competes as background in Delta masking (code; not in the thesis)."""
    mask_t_max: int = 300
    """Mask creation's one forward pass uses t ~ U[0, mask_t_max) (thesis and code: 300)."""
    score_timesteps: tuple[int, ...] = (0, 20, 40, 60, 80)
    """Timesteps of the attention score S_i (Eq. 3.4)."""
    top_n: int = 5
    """Largest values averaged in S_i (Eq. 3.4)."""
    attn_loss: Literal["maxnorm-mse", "jsd"] = "maxnorm-mse"
    """L_attn: max-normalised map vs mask, MSE at the cross-attention resolution (spec's reading of the thesis' L2,
    Break-a-Scene's form) or the code's Jensen-Shannon divergence of softmaxed map and mask."""
    rec_mask_interp: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    """Upsampling of the masks to the latent size for L_rec (code: bicubic; Break-a-Scene: nearest)."""
    train_tokens: bool = True
    """Train the placeholder embeddings with the K/V weights (code, Custom Diffusion; thesis silent)."""
    class_nouns: bool = False
    """Training and sampling prompts keep the class noun after each identifier (thesis: AttenCraft and
    Break-a-Scene use "[V1] and [V2]" without them; Custom Diffusion / DisenDiff with)."""
    detach_sot_kv: bool = True
    """Detach the start-of-text key/value in cross-attention (code, Custom Diffusion; thesis silent)."""
    cross_res: int | None = None
    """Cross-attention map side (None: latent side / 4, i.e. 16 for SD at 512 px, 8 for mini-sd)."""
    self_res: int | None = None
    """Self-attention map side (None: latent side / 2, i.e. 32 for SD at 512 px, 16 for mini-sd)."""
    fused_attention: bool = True
    """Fused SDPA where no map is captured (False is faster for mini-sd's tiny heads on CPU)."""
    train_seed: int = 42
    """Training seed (combined with the run seed; code default 42)."""
    sampler: Literal["pndm", "ddim", "ddpm", "dpm-solver"] = "pndm"
    """Sampler (thesis: PNDM)."""
    sample_steps: int = 50
    """Sampling steps (thesis: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance (thesis: 7.5)."""
    generate_batch: int = 10
    """Images per sampling batch."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if not 0.0 <= self.omega <= 1.0:
            raise ConfigError(f"method.omega must be in [0, 1], got {self.omega}")
        if self.steps < 0 or self.tau < 1 or self.top_n < 1 or not self.score_timesteps:
            raise ConfigError("method.steps >= 0, method.tau >= 1, method.top_n >= 1 and score_timesteps non-empty")


class AttenCraft(GeneratorBase):
    """AttenCraft (module doc): per-scene K/V + placeholder customisation with attention-guided masks."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"prompt"}, returns={"image"}, requires={"prompt"})
    Config = AttenCraftConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"sampler", "sample_steps", "guidance_scale",
                                                           "generate_batch"})

    def __init__(self, config: AttenCraftConfig | None = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.scenes: dict[str, dict[str, Any]] = {}
        self.current: str | None = None

    # -- model ----------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        if self.parts is not None:
            return
        from bench.diffusion.finetune import attention_parameters
        from bench.diffusion.models import ModelError, load_mini_sd, load_sd

        backbone = self.config.backbone
        if backbone == "mini-sd":
            self.parts = load_mini_sd()
        elif Path(backbone).expanduser().is_dir():
            self.parts = load_sd(Path(backbone).expanduser())
        else:
            raise ModelError(f"AttenCraft backbone folder not found: {backbone} (a diffusers Stable Diffusion folder, "
                             "e.g. stable-diffusion-2-1-base saved with save_pretrained, or 'mini-sd')")
        self.kv = attention_parameters(self.parts.unet, "cross-kv")
        self.kv_names = [n for n, p in self.parts.unet.named_parameters() if p.requires_grad]
        self.base_kv = [p.detach().clone() for p in self.kv]
        self.parts.unet.requires_grad_(False)

    @property
    def latent_side(self) -> int:
        return self.config.resolution // self.parts.codec.factor

    def resolutions(self) -> tuple[int, int]:
        c = self.config
        return c.cross_res or self.latent_side // 4, c.self_res or self.latent_side // 2

    def _placeholders(self, tokens: list[str], words: list[str]) -> list[int]:
        """Add missing placeholder tokens; set every placeholder row to its class word's embedding."""
        from bench.diffusion.tokens import _piece_ids, add_placeholder_tokens

        tok, enc = self.parts.tokenizer, self.parts.text_encoder
        missing = [(t, w) for t, w in zip(tokens, words) if t not in tok.get_vocab()]
        if missing:
            add_placeholder_tokens(tok, enc, [t for t, _ in missing], [w for _, w in missing],
                                   trainable=self.config.train_tokens)
        table = enc.get_input_embeddings().weight
        ids = tok.convert_tokens_to_ids(tokens)
        with torch.no_grad():
            for i, w in zip(ids, words):
                table[i] = table[_piece_ids(tok, w)].mean(0)
        return ids

    def _apply(self, scene: str) -> None:
        if self.current == scene:
            return
        state = self.scenes[scene]
        with torch.no_grad():
            for p, v in zip(self.kv, state["kv"]):
                p.copy_(v)
            ids = self._placeholders(state["tokens"], state["class_words"])
            self.parts.text_encoder.get_input_embeddings().weight[ids] = state["rows"]
        self.current = scene

    # -- protocol -------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image

        from .train import train_scene

        self._ensure_model()
        c = self.config
        cross_res, self_res = self.resolutions()
        table = self.parts.text_encoder.get_input_embeddings().weight
        advance = ctx.progress("attencraft fit", c.steps * len(train))
        for k, sample in enumerate(train):
            scene = str(sample.meta.get("scene", sample.meta.get("id", k)))
            tokens, words = list(sample.meta["placeholders"]), list(sample.meta["class_words"])
            with torch.no_grad():
                for p, v in zip(self.kv, self.base_kv):
                    p.copy_(v)
            ids = self._placeholders(tokens, words)
            table = self.parts.text_encoder.get_input_embeddings().weight
            for p in self.kv:
                p.requires_grad_(True)
            params = list(self.kv) + ([table] if c.train_tokens else [])
            keep = (table, table.detach().clone()) if c.train_tokens else None
            image = resize_image(sample.image, c.resolution)
            result = train_scene(self.parts, image, tokens, words, c, params, keep,
                                 derive_seed(c.train_seed, ctx.seed, k), cross_res, self_res, advance)
            for p in self.kv:
                p.requires_grad_(False)
            self.scenes[scene] = {"kv": [p.detach().clone() for p in self.kv], "rows": table[ids].detach().clone(),
                                  "tokens": tokens, "class_words": words, "masks": result.masks,
                                  "info": {"scores": result.scores, "ratios": result.ratios,
                                           "mask_timestep": result.mask_timestep,
                                           "mask_area": [int(m.sum()) for m in result.masks],
                                           "final_losses": result.log[-1] if result.log else None}}
            self.current = scene
            logger.info("attencraft scene %s: %s", scene, self.scenes[scene]["info"])

    def _prompt(self, cond: Condition) -> str:
        text = cond.prompt or ""
        if self.config.class_nouns:
            return text
        for tok, word in zip(cond.meta.get("placeholders", []), cond.meta.get("class_words", [])):
            text = re.sub(rf"{re.escape(tok)}\s+{re.escape(word)}\b", tok, text)
        return text

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample

        from .train import install_store

        self._ensure_model()
        c, parts = self.config, self.parts
        install_store(parts.unet, None, c.fused_attention, c.detach_sot_kv)
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        start = 0
        while start < len(conditions):
            scene = str(conditions[start].meta.get("scene"))
            if scene not in self.scenes:
                raise KeyError(f"attencraft: no fitted state for scene '{scene}' (fitted: {sorted(self.scenes)})")
            stop = start
            while stop < len(conditions) and stop - start < c.generate_batch and \
                    str(conditions[stop].meta.get("scene")) == scene:
                stop += 1
            chunk = conditions[start:stop]
            self._apply(scene)
            prompts = [self._prompt(cond) for cond in chunk]
            seeds = [derive_seed(ctx.seed, 17, int(cond.meta.get("index", start + k))) for k, cond in enumerate(chunk)]
            latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
            sched = make_scheduler(c.sampler, parts.scheduler)
            with torch.no_grad():
                uncond = parts.encode_prompt([""]).float()
                cond_emb = parts.encode_prompt(prompts).float()
                images = sample(parts.unet, cond_emb, sched, parts.codec, steps=c.sample_steps,
                                guidance_scale=c.guidance_scale, uncond=uncond,
                                latents=latents * sched.init_noise_sigma).clamp(0, 1)
            for k, cond in enumerate(chunk):
                meta: dict[str, Any] = {"scene": scene, "kind": cond.meta.get("kind")}
                if cond.meta.get("report_masks"):
                    meta["attention_masks"] = self.scenes[scene]["masks"].int().tolist()
                yield Sample(image=images[k], prompt=prompts[k], meta=meta)
            start = stop

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        index = {}
        for k, (scene, state) in enumerate(self.scenes.items()):
            tensors = {f"kv.{name}": v.contiguous() for name, v in zip(self.kv_names, state["kv"])}
            tensors["rows"] = state["rows"].contiguous()
            tensors["masks"] = state["masks"].to(torch.uint8).contiguous()
            save_file(tensors, str(path / f"scene-{k:03d}.safetensors"))
            index[scene] = {"file": f"scene-{k:03d}.safetensors", "tokens": state["tokens"],
                            "class_words": state["class_words"], "info": state["info"]}
        (path / "attencraft.json").write_text(json.dumps({"config": asdict(self.config), "scenes": index},
                                                         default=str, indent=1))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self._ensure_model()
        path = Path(path)
        index = json.loads((path / "attencraft.json").read_text())["scenes"]
        self.scenes = {}
        for scene, entry in index.items():
            tensors = load_file(str(path / entry["file"]))
            self.scenes[scene] = {"kv": [tensors[f"kv.{n}"] for n in self.kv_names], "rows": tensors["rows"],
                                  "masks": tensors["masks"].bool(), "tokens": entry["tokens"],
                                  "class_words": entry["class_words"], "info": entry["info"]}
        self.current = None
