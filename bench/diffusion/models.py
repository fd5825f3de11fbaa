"""Loading text-to-image diffusion components: Stable Diffusion folders, tiny random SD folders, mini-sd, mini-clip.

One type, `SDComponents`, holds what every method needs (UNet, text encoder, tokenizer, scheduler, codec),
whether it came from a real Stable Diffusion folder (``paper`` profile), a tiny random folder written by
`make_tiny_sd` (tests of the paper path), or the shipped mini-sd (``mini`` profile). Nothing is downloaded
unless the caller passes ``allow_download=True``.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.diffusion.codecs import Codec, IdentityCodec, VaeCodec

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "foundation" / "weights"
MINI_SD_FILE = "mini-sd.safetensors"
MINI_CLIP_FILE = "mini-clip.safetensors"
TOKENIZER_DIR = "tokenizer"
DIFFBOOST_CONTROLNET_DIR = "diffboost-controlnet-mini"

FOUNDATION_FILES = {"mini-sd": MINI_SD_FILE, "mini-clip": MINI_CLIP_FILE,
                    # DiffBoost's mini pretrained ControlNet (a save_pretrained folder; its weight file names it)
                    DIFFBOOST_CONTROLNET_DIR: f"{DIFFBOOST_CONTROLNET_DIR}/diffusion_pytorch_model.safetensors"}


def foundation_identity(*configs: Any) -> dict[str, str]:
    """SHA-256 prefixes of the shipped foundation weights a config names (a value ``"mini-sd"``, ``"mini-clip"`` or
    ``"diffboost-controlnet-mini"`` anywhere in it). The runner puts them into its stage keys, so a cache fitted on retrained weights of the same
    name is never reused."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value in FOUNDATION_FILES:
                names.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for config in configs:
        walk(config)
    out = {}
    for name in sorted(names):
        path = WEIGHTS_DIR / FOUNDATION_FILES[name]
        if path.is_file():
            stat = path.stat()
            out[name] = _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)[:16]
    return out


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime key the cache to the file's state
    from bench.store import file_digest

    return file_digest(Path(path))


class ModelError(FileNotFoundError):
    """A model folder, file or hub id is missing or incomplete (one line, saying what to put where)."""


@dataclass
class SDComponents:
    """The parts of a Stable-Diffusion-like model.

    Attributes:
        unet: `UNet2DConditionModel`.
        text_encoder: `CLIPTextModel` (its ``last_hidden_state`` conditions the UNet).
        tokenizer: `CLIPTokenizer` (pads to ``model_max_length``, 77).
        scheduler: the folder's diffusers scheduler (training noise schedule).
        codec: `VaeCodec` (latent models) or `IdentityCodec` (pixel-space models).
        name: where it came from (folder, hub id or ``mini-sd``).
        vae: the `AutoencoderKL` or None.
    """

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    codec: Codec
    name: str
    vae: Any = None

    @property
    def device(self) -> Any:
        return self.unet.device

    def token_ids(self, prompts: list[str]) -> Any:
        """Token ids (N, 77), padded to the tokenizer's max length as in Stable Diffusion."""
        return self.tokenizer(list(prompts), padding="max_length", truncation=True,
                              max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids.to(self.device)

    def encode_prompt(self, prompts: list[str]) -> Any:
        """Text-encoder states (N, 77, cross_attention_dim) for ``prompts`` ("" gives the unconditional one)."""
        return self.text_encoder(input_ids=self.token_ids(prompts)).last_hidden_state

    def sample_shape(self, batch: int, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        """Shape of the model-space noise for images of ``height`` x ``width`` pixels (default: the UNet's size)."""
        size = int(self.unet.config.sample_size) * self.codec.factor
        h, w = (height or size) // self.codec.factor, (width or size) // self.codec.factor
        return (batch, int(self.unet.config.out_channels), h, w)

    def to(self, device: Any = None, dtype: Any = None) -> SDComponents:
        for module in (self.unet, self.text_encoder, self.vae):
            if module is not None:
                module.to(device=device, dtype=dtype)
        return self


def _scheduler_from_config(config: dict[str, Any]) -> Any:
    import diffusers

    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ModelError(f"unknown scheduler class '{name}' in the model's scheduler config")
    return cls.from_config(config)


def load_sd(source: str | Path, allow_download: bool = False, dtype: Any = None, device: str = "cpu",
            revision: str | None = None) -> SDComponents:
    """Load Stable Diffusion components (1.4 / 1.5 / 1.5-inpainting / 2.1-base layout) from a folder or hub id.

    The layout is diffusers': ``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` and, for latent
    models, ``vae/``. A folder without ``vae/`` is a pixel-space model and gets an `IdentityCodec`.

    Args:
        source: a local folder, or a hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
        allow_download: let the hub be used (default: local files only; the hub cache is still read).
        dtype: torch dtype of the weights (default float32).
        device: where to put the modules.
        revision: hub revision.

    Raises:
        ModelError: the folder or a component is missing (one line naming the path and what to put there).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(source).expanduser()
    is_local = path.exists()
    if not is_local and (str(source).startswith((".", "/", "~")) or str(source).count("/") != 1):
        raise ModelError(f"model folder {source} does not exist: put a diffusers Stable Diffusion folder there "
                         "(unet/, text_encoder/, tokenizer/, scheduler/, vae/)")
    if is_local:
        missing = [d for d in ("unet", "text_encoder", "tokenizer", "scheduler") if not (path / d).is_dir()]
        if missing:
            raise ModelError(f"{path}: missing {', '.join(m + '/' for m in missing)} (expected the diffusers Stable "
                             "Diffusion layout: unet/, text_encoder/, tokenizer/, scheduler/, vae/)")
    where = str(path) if is_local else str(source)
    common: dict[str, Any] = {"local_files_only": not allow_download}
    if revision:
        common["revision"] = revision
    try:
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype, **common)
        text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", dtype=dtype, **common)
        tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer", **common)
        if is_local:
            sched_config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        else:
            from diffusers import DDPMScheduler

            sched_config = dict(DDPMScheduler.load_config(where, subfolder="scheduler", **common))
        scheduler = _scheduler_from_config(sched_config)
        has_vae = (path / "vae").is_dir() if is_local else True
        vae = AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype, **common) if has_vae else None
    except (OSError, ValueError) as exc:
        if is_local:
            raise ModelError(f"{path}: could not load a component ({str(exc).splitlines()[0]})") from exc
        raise ModelError(f"'{source}' is not a local folder and is not in the hub cache "
                         f"(offline: download it elsewhere and pass the folder, or allow downloads): "
                         f"{str(exc).splitlines()[0]}") from exc
    codec: Codec = VaeCodec(vae) if vae is not None else IdentityCodec(int(unet.config.in_channels))
    parts = SDComponents(unet, text_encoder, tokenizer, scheduler, codec, name=where, vae=vae)
    for module in (unet, text_encoder, vae):
        if module is not None:
            module.eval().requires_grad_(False)
    return parts.to(device=device)


def make_tiny_sd(folder: Path, seed: int = 0, inpainting: bool = False, cross_attention_dim: int = 32,
                 sample_size: int = 16, words: list[str] | None = None) -> Path:
    """Write a tiny randomly initialised Stable Diffusion folder in the real layout, via ``save_pretrained``.

    ``unet/`` (two blocks, cross-attention at both), ``vae/`` (AutoencoderKL, 4 latent channels, factor 2),
    ``text_encoder/`` (CLIPTextModel, 2 layers), ``tokenizer/`` (a CLIPTokenizer whose ``vocab.json`` and
    ``merges.txt`` are written by `bench.foundation.tokenizer`), ``scheduler/`` (PNDM with SD's
    scaled-linear betas) and ``model_index.json`` (naming `StableDiffusionPipeline` and the component classes, as
    ``save_pretrained`` of the pipeline writes it). `load_sd` then loads it exactly as it loads the real weights.

    Args:
        folder: output folder (created).
        seed: torch seed of the random weights.
        inpainting: 9 UNet input channels, as SD 1.5-inpainting.
        cross_attention_dim: text width.
        sample_size: latent side (images are ``2 * sample_size`` pixels).
        words: tokenizer vocabulary words (default: a few prompt words).
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.foundation.tokenizer import TEMPLATE_WORDS, build_clip_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(list(words or TEMPLATE_WORDS) + ["a", "red", "blue", "circle", "square"],
                                     folder / ".tokenizer-build")
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=9 if inpainting else 4, out_channels=4,
                                block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=2 * sample_size)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=cross_attention_dim,
                                                intermediate_size=2 * cross_attention_dim, num_hidden_layers=2,
                                                num_attention_heads=2, max_position_embeddings=77,
                                                bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1)
    parts = SDComponents(unet, text_encoder, tokenizer, scheduler, VaeCodec(vae), name=str(folder), vae=vae)
    export_sd_folder(parts, folder)
    import shutil

    for name in ("vocab.json", "merges.txt"):  # the files written by code, kept beside tokenizer.json
        shutil.copyfile(folder / ".tokenizer-build" / name, folder / "tokenizer" / name)
    shutil.rmtree(folder / ".tokenizer-build", ignore_errors=True)
    return folder


def _read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def _require(path: Path, what: str, name: str) -> Path:
    if not path.exists():
        raise ModelError(f"{what} missing: expected {path} (remake it with `bench foundation train {name}`)")
    return path


def load_mini_clip(weights_dir: Path | None = None, dtype: Any = None, device: str = "cpu") -> Any:
    """The shipped mini-clip as a `bench.foundation.mini_clip.MiniClip` (eval mode, no gradients).

    Args:
        weights_dir: folder with ``mini-clip.safetensors`` and ``tokenizer/`` (default: the package's weights).
        dtype: weights dtype (default float32; shipped in float16).
        device: target device.
    """
    from bench.foundation.mini_clip import load_mini_clip_from

    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    weights = _require(folder / MINI_CLIP_FILE, "mini-clip weights", "mini-clip")
    _require(folder / TOKENIZER_DIR / "vocab.json", "mini tokenizer", "mini-clip")
    clip = load_mini_clip_from(weights, folder / TOKENIZER_DIR, _read_metadata(weights), dtype=dtype)
    clip.model.to(device)
    return clip


def load_mini_sd(weights_dir: Path | None = None, dtype: Any = None, device: str = "cpu") -> SDComponents:
    """The shipped mini-sd as `SDComponents` (pixel space: `IdentityCodec`; eval mode, no gradients).

    Args:
        weights_dir: folder with ``mini-sd.safetensors`` and ``tokenizer/`` (default: the package's weights).
        dtype: weights dtype (default float32; shipped in float16).
        device: target device.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    weights = _require(folder / MINI_SD_FILE, "mini-sd weights", "mini-sd")
    _require(folder / TOKENIZER_DIR / "vocab.json", "mini tokenizer", "mini-sd")
    meta = _read_metadata(weights)
    state = load_file(str(weights))
    unet = UNet2DConditionModel(**meta["unet_config"])
    unet.load_state_dict({k[5:]: v.float() for k, v in state.items() if k.startswith("unet.")})
    text_encoder = CLIPTextModel(CLIPTextConfig(**meta["text_config"]))
    text_state = {k[len("text_encoder."):]: v.float() for k, v in state.items() if k.startswith("text_encoder.")}
    if not set(text_encoder.state_dict()) & set(text_state):  # "text_model." prefix differs across transformers
        text_state = {k.removeprefix("text_model."): v for k, v in text_state.items()}
    missing, unexpected = text_encoder.load_state_dict(text_state, strict=False)
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise ModelError(f"{weights}: text encoder weights do not match its config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / TOKENIZER_DIR))
    scheduler = _scheduler_from_config(meta["scheduler_config"])
    for module in (unet, text_encoder):
        module.eval().requires_grad_(False)
        module.to(device=device, dtype=dtype or torch.float32)
    return SDComponents(unet, text_encoder, tokenizer, scheduler, IdentityCodec(3), name="mini-sd")


def export_sd_folder(parts: SDComponents, folder: Path) -> Path:
    """Write components in the diffusers layout (``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
    ``vae/`` if any, ``model_index.json``) so that `load_sd` reads them back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts.unet.save_pretrained(str(folder / "unet"))
    parts.text_encoder.save_pretrained(str(folder / "text_encoder"))
    parts.tokenizer.save_pretrained(str(folder / "tokenizer"))
    parts.scheduler.save_pretrained(str(folder / "scheduler"))
    if parts.vae is not None:
        parts.vae.save_pretrained(str(folder / "vae"))
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", type(parts.scheduler).__name__]}
    if parts.vae is not None:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder
