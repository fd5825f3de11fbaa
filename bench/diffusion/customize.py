"""Per-scene customisation of a text-to-image model from one image holding several concepts (thesis chapter 3).

Shared by AttenCraft (``methods/attencraft``) and its baselines Custom Diffusion, DisenDiff and Break-a-Scene
(``baselines/``): every one of them learns one placeholder token per concept and fine-tunes (a part of) the model
on each scene independently, starting from the same base model, then samples each condition with its scene's
weights. This module holds what they share:

* `SceneTuningConfig`: the common hyperparameters (backbone, resolution, sampling, token training, ...);
* `SceneCustomizer`: a `GeneratorBase` that loads the backbone, resets the tuned tensors per scene, initialises
  the placeholders, calls the method's `SceneCustomizer.fit_scene`, keeps each scene's tensors, generates, saves
  and loads them; a scene's report (learned masks, attention scores) goes out on the condition the task flags
  ``meta["report_masks"]``;
* attention capture with the start-of-text key/value detached (`install_store`, Custom Diffusion's trick), the
  training prompt (`prompt_for`), L_attn / masked L_rec (`attention_loss`, `masked_rec_loss`), masked attention
  scores (`masked_attention_scores`, Eq. 3.4 / Table 3.5), the masks a method's token maps give after training
  (`token_map_masks`) and one optimisation step with the placeholder-row restore (`optimizer_step`).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.diffusion.attention import AttentionStore, StoringAttnProcessor
from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- attention capture
class DetachStartTokenProcessor(StoringAttnProcessor):
    """Storing attention that detaches the start-of-text token's key and value in cross-attention (Custom
    Diffusion's trick, kept by the AttenCraft code): the SoT row is identical for every prompt."""

    def adjust_qkv(self, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
        if not self.info.cross:
            return query, key, value
        return query, torch.cat([key[:, :1].detach(), key[:, 1:]], 1), torch.cat([value[:, :1].detach(), value[:, 1:]], 1)


def install_store(unet: Any, store: AttentionStore | None, fused: bool, detach_sot: bool) -> None:
    """Put a storing processor (detaching the SoT key/value when ``detach_sot``) on every attention layer."""
    cls = DetachStartTokenProcessor if detach_sot else StoringAttnProcessor
    unet.set_attn_processor({name: cls(store, name, fused) for name in unet.attn_processors})


def prompt_for(tokens: Sequence[str], subset: Sequence[int], class_words: Sequence[str] | None = None) -> str:
    """``"a photo of <new1> and <new2>"`` (AttenCraft's and Break-a-Scene's template); with ``class_words``
    ``"a photo of <new1> cat and <new2> dog"`` (Custom Diffusion's and DisenDiff's)."""
    words = [f"{tokens[i]} {class_words[i]}" if class_words else tokens[i] for i in subset]
    return "a photo of " + " and ".join(words)


def token_positions(tokenizer: Any, prompt: str, tokens: Sequence[str]) -> list[int]:
    """Position of each placeholder in the tokenized prompt (first occurrence)."""
    from bench.diffusion.tokens import token_indices

    return [token_indices(tokenizer, prompt, tok)[0] for tok in tokens]


def unet_forward(parts: Any, latents: torch.Tensor, t: int, prompt: str) -> torch.Tensor:
    """One UNet call on ``latents`` at timestep ``t`` conditioned on ``prompt``."""
    cond = parts.encode_prompt([prompt])
    return parts.unet(latents, torch.tensor([t]), encoder_hidden_states=cond).sample


# ---------------------------------------------------------------------------------------------------- losses
def attention_loss(maps: torch.Tensor, masks: torch.Tensor, kind: str = "maxnorm-mse") -> torch.Tensor:
    """Attention loss over the concepts of a step: maps (K, h, w) cross-attention, masks (K, h, w) float; the mean
    over concepts (Break-a-Scene sums: multiply by K).

    ``maxnorm-mse`` (default; Break-a-Scene's form, AttenCraft's reading of the thesis' squared L2): each map divided
    by its max, mean squared error to its mask. ``jsd`` (the AttenCraft code): Jensen-Shannon divergence between the
    softmax of the flattened map and of the flattened mask.
    """
    if kind == "maxnorm-mse":
        norm = maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        return ((norm - masks) ** 2).flatten(1).mean(1).mean()
    if kind == "jsd":
        p, q = F.softmax(maps.flatten(1), 1), F.softmax(masks.flatten(1), 1)
        m = 0.5 * (p + q)
        kl = lambda a, b: (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(1)  # noqa: E731
        return (0.5 * kl(p, m) + 0.5 * kl(q, m)).mean()
    raise ValueError(f"attn_loss must be 'maxnorm-mse' or 'jsd', got {kind!r}")


def masked_rec_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked diffusion loss (AttenCraft Eq. 3.6, Break-a-Scene): squared error of prediction and target both
    multiplied by the mask, mean over all elements."""
    return F.mse_loss(pred * mask, target * mask)


def resize_masks(masks: torch.Tensor, side: int, mode: str = "nearest") -> torch.Tensor:
    """(K, H, W) bool/float masks -> (K, side, side) float in [0, 1] (``area`` gives soft weights)."""
    extra = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(masks[:, None].float(), size=(side, side), mode=mode, **extra)[:, 0].clamp(0, 1)


# ------------------------------------------------------------------------------------------- attention scores
def masked_attention_scores(parts: Any, z0: torch.Tensor, prompt: str, tokens: Sequence[str], masks: torch.Tensor,
                            timesteps: Sequence[int], top_n: int, cross_res: int, generator: torch.Generator,
                            noise_scheduler: Any, fused: bool = True, detach_sot: bool = True) -> list[float]:
    """Per placeholder, the mean over ``timesteps`` of the mean of the ``top_n`` largest values of its raw
    cross-attention map (heads and layers at ``cross_res`` averaged) inside its mask (Eq. 3.4; ``top_n=1`` is the
    "highest cross-attention score" of Table 3.5). One fixed noise for all timesteps; masks (K, H, W) are
    area-resized to ``cross_res`` (soft weights)."""
    from bench.diffusion.concept_masks import attention_score

    store = AttentionStore(cross=True, resolutions={cross_res}, mode="last")
    install_store(parts.unet, store, fused, detach_sot)
    noise = torch.randn(z0.shape, generator=generator)
    positions = token_positions(parts.tokenizer, prompt, tokens)
    per_token: list[list[torch.Tensor]] = [[] for _ in tokens]
    with torch.no_grad():
        for t in timesteps:
            store.begin_step(int(t))
            unet_forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([int(t)])), int(t), prompt)
            cross = store.maps(cross_res, "cross")[0]
            for k, pos in enumerate(positions):
                per_token[k].append(cross[..., pos])
    small = resize_masks(masks, cross_res, "area")
    return [attention_score(per_token[k], small[k], top_n) for k in range(len(tokens))]


def token_map_masks(parts: Any, z0: torch.Tensor, prompt: str, tokens: Sequence[str], cross_res: int, t: int,
                    generator: torch.Generator, noise_scheduler: Any, nu: float = 2.0, gamma: float = 0.1,
                    fused: bool = True, detach_sot: bool = True) -> torch.Tensor:
    """The masks a model's placeholder maps give: one UNet pass at ``t`` with ``prompt``, each placeholder's
    cross-attention map suppressed (power ``nu``, min-max normalised) and Delta-masked against the others with
    margin ``gamma`` (AttenCraft's Eq. 3.2-3.3 without self-attention enhancement). (K, r, r) bool, exclusive."""
    from bench.diffusion.concept_masks import delta_masks, propagate

    store = AttentionStore(cross=True, resolutions={cross_res}, mode="last")
    install_store(parts.unet, store, fused, detach_sot)
    noise = torch.randn(z0.shape, generator=generator)
    with torch.no_grad():
        store.begin_step(t)
        unet_forward(parts, noise_scheduler.add_noise(z0, noise, torch.tensor([t])), t, prompt)
    cross = store.maps(cross_res, "cross")[0]
    positions = token_positions(parts.tokenizer, prompt, tokens)
    maps = propagate(cross[..., positions].permute(2, 0, 1), None, nu, side=cross_res)
    return delta_masks(maps, None, gamma)


# ----------------------------------------------------------------------------------------------- optimisation
def optimizer_step(loss: torch.Tensor, params: Sequence[torch.Tensor], optimizer: Any, max_grad_norm: float,
                   keep_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> None:
    """Backward, clip, AdamW step, zero; then put back every embedding row that is not a placeholder
    (``keep_rows`` = (table, original values, bool mask of the fixed rows)): AdamW's weight decay would move them."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if keep_rows is not None:
        table, original, fixed = keep_rows
        with torch.no_grad():
            table[fixed] = original[fixed]


def adamw(params: Sequence[torch.Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the chapter's settings (beta 0.9 / 0.999, eps 1e-8)."""
    return torch.optim.AdamW(list(params), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, eps=1e-8)


# ------------------------------------------------------------------------------------------------ the generator
@dataclass(frozen=True)
class SceneTuningConfig:
    """What every chapter-3 method shares ([C] = reference code, [I] = inferred)."""

    backbone: str = "stable-diffusion-2-1-base"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (thesis: SD 2.1-base for every method)."""
    resolution: int = 512
    """Training and sampling side in pixels (images squashed, no augmentation [C])."""
    steps: int = 200
    """Training steps per scene."""
    lr: float = 5e-5
    """AdamW learning rate."""
    weight_decay: float = 1e-2
    """AdamW weight decay (diffusers' training scripts)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (diffusers' training scripts)."""
    train_tokens: bool = True
    """Train the placeholder embeddings with the model weights (Custom Diffusion's modifier tokens)."""
    class_nouns: bool = True
    """Training and sampling prompts keep the class noun after each identifier ("[V1] cat and [V2] dog")."""
    detach_sot_kv: bool = True
    """Detach the start-of-text key/value in cross-attention (Custom Diffusion)."""
    cross_res: int | None = None
    """Cross-attention map side (None: latent side / 4, i.e. 16 for SD at 512 px, 8 for mini-sd)."""
    mask_t_max: int = 300
    """Reported token-map masks come from one pass at t ~ U[0, mask_t_max) (AttenCraft's mask pass)."""
    mask_gamma: float = 0.1
    """Delta-masking margin of the reported token-map masks (AttenCraft's gamma)."""
    fused_attention: bool = True
    """Fused SDPA where no map is captured (False is faster for mini-sd's tiny heads on CPU)."""
    train_seed: int = 42
    """Training seed (combined with the run seed)."""
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

        if self.steps < 0 or self.lr <= 0 or self.resolution < 8:
            raise ConfigError(f"method.steps >= 0, method.lr > 0 and method.resolution >= 8 (got {self.steps}, "
                              f"{self.lr}, {self.resolution})")


@dataclass
class SceneFit:
    """What fitting one scene produced: reported masks (K, h, w) bool or None, per-concept scores reported to the
    task (``report``: JSON values put on the flagged condition's sample meta) and a log summary (``info``)."""

    masks: torch.Tensor | None = None
    report: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class SceneCustomizer(GeneratorBase):
    """Base generator of the chapter-3 methods (module doc). Subclasses set ``label`` and ``state_file`` and
    implement `fit_scene`; they may override `init_words`, `trains_text_encoder` and `steps_per_scene`."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"prompt"}, returns={"image"}, requires={"prompt"},
                                                        fit_needs={"concepts"})
    Config = SceneTuningConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"sampler", "sample_steps", "guidance_scale",
                                                           "generate_batch"})
    label: ClassVar[str] = "customizer"
    state_file: ClassVar[str] = "scenes.json"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.parts: Any = None
        self.scenes: dict[str, dict[str, Any]] = {}
        self.current: str | None = None

    # -- hooks ----------------------------------------------------------------------------------
    def fit_scene(self, image: torch.Tensor, sample: Sample, tokens: list[str], class_words: list[str], seed: int,
                  advance: Callable[[], None]) -> SceneFit:
        """Customise the model (already reset, placeholders initialised) on one scene image (3, R, R)."""
        raise NotImplementedError

    def init_words(self, tokens: list[str], class_words: list[str]) -> list[str]:
        """The word each placeholder's embedding starts from (default: its class word)."""
        return list(class_words)

    def trains_text_encoder(self) -> bool:
        """Whether a scene changes the text encoder's weights beyond the placeholder rows."""
        return False

    def steps_per_scene(self) -> int:
        return int(self.config.steps)

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
            raise ModelError(f"{self.label} backbone folder not found: {backbone} (a diffusers Stable Diffusion "
                             "folder, e.g. stable-diffusion-2-1-base saved with save_pretrained, or 'mini-sd')")
        self.kv = attention_parameters(self.parts.unet, "cross-kv")
        self.kv_names = [n for n, p in self.parts.unet.named_parameters() if p.requires_grad]
        self.parts.unet.requires_grad_(False)
        self.text_names: list[str] = []
        self.text_params: list[torch.nn.Parameter] = []
        if self.trains_text_encoder():
            table = self.parts.text_encoder.get_input_embeddings().weight
            named = [(n, p) for n, p in self.parts.text_encoder.named_parameters() if p is not table]
            self.text_names, self.text_params = [n for n, _ in named], [p for _, p in named]
        self.base_tensors = [p.detach().clone() for p in self.tuned()]

    def tuned(self) -> list[torch.nn.Parameter]:
        """The tensors a scene changes besides the placeholder rows: cross-attention K/V (+ the text encoder)."""
        return list(self.kv) + list(self.text_params)

    def tuned_names(self) -> list[str]:
        return [f"kv.{n}" for n in self.kv_names] + [f"text.{n}" for n in self.text_names]

    @property
    def latent_side(self) -> int:
        return self.config.resolution // self.parts.codec.factor

    def cross_resolution(self) -> int:
        return self.config.cross_res or self.latent_side // 4

    def embedding_table(self) -> torch.nn.Parameter:
        return self.parts.text_encoder.get_input_embeddings().weight

    def _placeholders(self, tokens: list[str], words: list[str]) -> list[int]:
        """Add missing placeholder tokens; set every placeholder row to its initializer word's embedding."""
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

    def row_guard(self, tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(table, its current values, fixed-row mask) for `optimizer_step`: every row but the placeholders'."""
        table = self.embedding_table()
        fixed = torch.ones(table.shape[0], dtype=torch.bool)
        fixed[self.parts.tokenizer.convert_tokens_to_ids(tokens)] = False
        return table, table.detach().clone(), fixed

    def trainable(self, kv: bool = True, rows: bool | None = None, text: bool = False) -> list[torch.nn.Parameter]:
        """Turn on gradients for the chosen groups (off for the rest) and return them: K/V, the embedding table
        (placeholder rows only get gradient: `bench.diffusion.tokens`), the rest of the text encoder."""
        rows = self.config.train_tokens if rows is None else rows
        for p in self.kv:
            p.requires_grad_(kv)
        for p in self.text_params:
            p.requires_grad_(text)
        self.embedding_table().requires_grad_(rows)
        return (list(self.kv) if kv else []) + ([self.embedding_table()] if rows else []) + \
            (list(self.text_params) if text else [])

    def _freeze(self) -> None:
        self.trainable(kv=False, rows=False, text=False)

    def _reset(self) -> None:
        with torch.no_grad():
            for p, v in zip(self.tuned(), self.base_tensors):
                p.copy_(v)

    def _apply(self, scene: str) -> None:
        if self.current == scene:
            return
        state = self.scenes[scene]
        with torch.no_grad():
            for p, v in zip(self.tuned(), state["tensors"]):
                p.copy_(v)
            ids = self._placeholders(state["tokens"], state["class_words"])
            self.embedding_table()[ids] = state["rows"]
        self.current = scene

    # -- protocol -------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        from bench.tasks.common import resize_image

        self._ensure_model()
        c = self.config
        advance = ctx.progress(f"{self.label} fit", self.steps_per_scene() * len(train))
        for k, sample in enumerate(train):
            scene = str(sample.meta.get("scene", sample.meta.get("id", k)))
            if "placeholders" not in sample.meta or "class_words" not in sample.meta:
                raise FitSetError(f"{self.label} learns concepts from a customization set (each training image with "
                                  f"its placeholders and class words, as task concept gives); training sample "
                                  f"{sample.meta.get('id', k)} has none")
            tokens, words = list(sample.meta["placeholders"]), list(sample.meta["class_words"])
            self._reset()
            ids = self._placeholders(tokens, self.init_words(tokens, words))
            image = resize_image(sample.image, c.resolution)
            result = self.fit_scene(image, sample, tokens, words, derive_seed(c.train_seed, ctx.seed, k), advance)
            self._freeze()
            self.parts.unet.eval()
            self.scenes[scene] = {"tensors": [p.detach().clone() for p in self.tuned()],
                                  "rows": self.embedding_table()[ids].detach().clone(), "tokens": tokens,
                                  "class_words": words, "masks": result.masks, "report": result.report,
                                  "info": result.info}
            self.current = None
            logger.info("%s scene %s: %s", self.label, scene, {**result.info, **result.report})

    def _prompt(self, cond: Condition) -> str:
        text = cond.prompt or ""
        if self.config.class_nouns:
            return text
        for tok, word in zip(cond.meta.get("placeholders", []), cond.meta.get("class_words", [])):
            text = re.sub(rf"{re.escape(tok)}\s+{re.escape(word)}\b", tok, text)
        return text

    def scene_report(self, scene: str) -> dict[str, Any]:
        """Sample meta of the flagged condition: ``attention_masks`` (K, h, w) 0/1 and the method's scores."""
        state = self.scenes[scene]
        out = dict(state.get("report") or {})
        if state.get("masks") is not None:
            out["attention_masks"] = state["masks"].int().tolist()
        return out

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        from bench.diffusion.sampling import make_scheduler, sample

        self._ensure_model()
        c, parts = self.config, self.parts
        install_store(parts.unet, None, c.fused_attention, c.detach_sot_kv)
        shape = parts.sample_shape(1, c.resolution, c.resolution)[1:]
        start = 0
        while start < len(conditions):
            scene = str(conditions[start].meta.get("scene"))
            if scene not in self.scenes:
                raise KeyError(f"{self.label}: no fitted state for scene '{scene}' (fitted: {sorted(self.scenes)})")
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
                    meta.update(self.scene_report(scene))
                yield Sample(image=images[k], prompt=prompts[k], meta=meta)
            start = stop

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        index = {}
        for k, (scene, state) in enumerate(self.scenes.items()):
            tensors = {name: v.contiguous() for name, v in zip(self.tuned_names(), state["tensors"])}
            tensors["rows"] = state["rows"].contiguous()
            if state["masks"] is not None:
                tensors["masks"] = state["masks"].to(torch.uint8).contiguous()
            save_file(tensors, str(path / f"scene-{k:03d}.safetensors"))
            index[scene] = {"file": f"scene-{k:03d}.safetensors", "tokens": state["tokens"],
                            "class_words": state["class_words"], "report": state["report"], "info": state["info"]}
        (path / self.state_file).write_text(json.dumps({"config": asdict(self.config), "scenes": index},
                                                       default=str, indent=1))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self._ensure_model()
        path = Path(path)
        index = json.loads((path / self.state_file).read_text())["scenes"]
        self.scenes = {}
        for scene, entry in index.items():
            tensors = load_file(str(path / entry["file"]))
            self.scenes[scene] = {"tensors": [tensors[n] for n in self.tuned_names()], "rows": tensors["rows"],
                                  "masks": tensors["masks"].bool() if "masks" in tensors else None,
                                  "tokens": entry["tokens"], "class_words": entry["class_words"],
                                  "report": entry.get("report") or {}, "info": entry["info"]}
        self.current = None

    # -- helpers for subclasses -----------------------------------------------------------------
    def noise_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.parts.scheduler.config)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.parts.codec.encode(image[None].float())

    def report_token_masks(self, z0: torch.Tensor, tokens: list[str], class_words: list[str],
                           generator: torch.Generator, noise_scheduler: Any) -> torch.Tensor:
        """`token_map_masks` of the trained model with the full training prompt (the masks these methods learn
        implicitly; AttenCraft reports its Stage-I masks instead)."""
        c = self.config
        prompt = prompt_for(tokens, list(range(len(tokens))), class_words if c.class_nouns else None)
        t = int(torch.randint(0, c.mask_t_max, (1,), generator=generator))
        return token_map_masks(self.parts, z0, prompt, tokens, self.cross_resolution(), t, generator,
                               noise_scheduler, gamma=c.mask_gamma, fused=c.fused_attention,
                               detach_sot=c.detach_sot_kv)
