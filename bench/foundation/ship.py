"""Turning training runs into the shipped weight files (``bench/foundation/weights``).

* ``mini-clip.safetensors``: the CLIPModel state dict; metadata ``arch`` (`MiniClipArch`), ``recipe``, ``training``.
* ``mini-sd.safetensors``: ``unet.*`` (EMA weights) and ``text_encoder.*``; metadata ``unet_config``,
  ``text_config``, ``scheduler_config``, ``recipe``, ``training``.
* ``tokenizer/``: the shared CLIP tokenizer files (vocab.json, merges.txt, configs).
Weights are stored in float16 unless ``dtype`` says otherwise (model cards state the fp16-vs-fp32 check).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _latest(run_dir: Path, final: str, checkpoint: str) -> Path:
    for name in (final, checkpoint):
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"{run_dir}: neither {final} nor {checkpoint} exists (train first)")


def _save(state: dict[str, Any], path: Path, metadata: dict[str, Any], dtype: Any) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    out = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(out, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})
    return path


def ship_tokenizer(clip_run: Path, weights_dir: Path) -> Path:
    """Copy the run's tokenizer folder to ``weights_dir / "tokenizer"``."""
    target = weights_dir / "tokenizer"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(clip_run / "tokenizer", target)
    return target


def ship_mini_clip(clip_run: Path, weights_dir: Path, dtype: Any = None, training: dict[str, Any] | None = None) -> Path:
    """Write ``mini-clip.safetensors`` from the run's last stage (stage 2 if it exists, else stage 1)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from bench.foundation.mini_clip import MiniClipRecipe

    candidates = ["stage2-final.safetensors", "stage2.safetensors", "stage1-final.safetensors", "stage1.safetensors"]
    source = next((clip_run / c for c in candidates if (clip_run / c).is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{clip_run}: no mini-clip weights (train first)")
    with safe_open(str(source), framework="pt") as f:
        info = dict(f.metadata() or {})
    recipe = MiniClipRecipe()
    meta = {"arch": recipe.to_dict()["arch"], "recipe": recipe.to_dict(),
            "training": {"source": source.name, **info, **(training or {})}}
    ship_tokenizer(clip_run, weights_dir)
    return _save(load_file(str(source)), weights_dir / "mini-clip.safetensors", meta, dtype or torch.float16)


def mini_sd_state(sd_run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict with ``unet.*`` EMA and ``text_encoder.*`` keys, metadata) from a mini-sd run folder."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from bench.foundation.mini_clip import MiniClipRecipe, clip_config
    from bench.foundation.mini_sd import SCHEDULER_CONFIG, MiniSDRecipe, unet_config

    source = _latest(sd_run, "unet-ema-final.safetensors", "checkpoint.safetensors")
    raw = load_file(str(source))
    if source.name.startswith("checkpoint"):
        unet = {k[4:]: v for k, v in raw.items() if k.startswith("ema.")}
    else:
        unet = raw
    text = {k: v for k, v in load_file(str(sd_run / "text_encoder_source.safetensors")).items()
            if k.startswith("text_model.")}
    recipe_path = sd_run / "recipe.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else MiniSDRecipe().to_dict()
    tokenizer_dir = sd_run / "tokenizer" if (sd_run / "tokenizer").is_dir() else sd_run.parent / "mini-clip" / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    text_config = clip_config(MiniClipRecipe().arch, len(tokenizer), tokenizer.bos_token_id,
                              tokenizer.eos_token_id).text_config.to_dict()
    text_config = {k: v for k, v in text_config.items() if k not in ("transformers_version", "architectures")}
    arch = MiniSDRecipe().arch
    meta = {"unet_config": unet_config(arch, int(text_config["hidden_size"])), "text_config": text_config,
            "scheduler_config": {"_class_name": "DDPMScheduler", **SCHEDULER_CONFIG}, "recipe": recipe,
            "training": {"source": source.name}}
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as fh:  # the final file records its steps and training time
        meta["training"] |= {k: v for k, v in (fh.metadata() or {}).items() if k in ("steps", "elapsed_s")}
    if recipe.get("init_weights"):  # a continuation: keep the history of the weights it started from
        init = sd_run / recipe["init_weights"]
        if init.is_file():
            with safe_open(str(init), framework="pt") as fh:
                before = {k: json.loads(v) for k, v in (fh.metadata() or {}).items() if k in ("recipe", "training")}
            meta["training"]["continued_from"] = {"sha256": recipe.get("init_sha256"), **before}
    state = {f"unet.{k}": v for k, v in unet.items()}
    state |= {f"text_encoder.{k}": v for k, v in text.items()}
    del torch
    return state, meta


def ship_mini_sd(sd_run: Path, weights_dir: Path, dtype: Any = None, training: dict[str, Any] | None = None) -> Path:
    """Write ``mini-sd.safetensors`` from a run folder (final EMA weights, else the last checkpoint's EMA)."""
    import torch

    state, meta = mini_sd_state(sd_run)
    meta["training"] |= training or {}
    own = sd_run / "tokenizer"  # a continuation run holds the tokenizer of the weights it started from
    if own.is_dir():
        if (weights_dir / "tokenizer").resolve() != own.resolve():
            ship_tokenizer(sd_run, weights_dir)
    else:
        ship_tokenizer(sd_run.parent / "mini-clip", weights_dir)
    return _save(state, weights_dir / "mini-sd.safetensors", meta, dtype or torch.float16)


def ship_diffboost_controlnet(folder: Path, weights_dir: Path, dtype: Any = None) -> Path:
    """Write ``diffboost-controlnet-mini/`` (diffusers ``save_pretrained`` layout, float16 by default) from a
    pretrained DiffBoost ControlNet folder: the mini-world pretraining a DiffBoost run caches under
    ``<work dir>/cache/diffboost-pretrain/<recipe key>/`` (methods/diffboost/train.py)."""
    import torch

    from bench.diffusion.controlnet import load_controlnet
    from bench.diffusion.models import DIFFBOOST_CONTROLNET_DIR

    controlnet = load_controlnet(Path(folder)).to(dtype or torch.float16)
    controlnet.register_to_config(_name_or_path=DIFFBOOST_CONTROLNET_DIR)  # not the folder it was read from
    target = weights_dir / DIFFBOOST_CONTROLNET_DIR
    if target.exists():
        shutil.rmtree(target)
    controlnet.save_pretrained(str(target), safe_serialization=True)
    return target
