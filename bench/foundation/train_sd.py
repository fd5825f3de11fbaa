"""Pretraining of mini-sd from its recipe on the generic world (denoising + attention-mask loss), resumable."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.foundation.mini_sd import (SCHEDULER_CONFIG, MiniSDRecipe, attention_mask_loss, object_word_targets,
                                      unet_config)
from bench.store import file_digest

logger = logging.getLogger(__name__)


def text_encoder_from_clip(clip_weights: Path, tokenizer: Any, arch: Any) -> Any:
    """mini-clip's text tower as a standalone `CLIPTextModel` (weights ``text_model.*`` of the CLIPModel)."""
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    from bench.foundation.mini_clip import clip_config

    config = clip_config(arch, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).text_config
    model = CLIPTextModel(config)
    state = {k: v for k, v in load_file(str(clip_weights)).items() if k.startswith("text_model.")}
    own = set(model.state_dict())
    if not own & set(state):  # transformers versions differ on the "text_model." prefix of CLIPTextModel
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise RuntimeError(f"text tower weights do not match: missing {missing}, unexpected {unexpected}")
    return model


class SceneBatches:
    """Deterministic batches of generic-world scenes: images in [-1, 1], captions, attention targets."""

    def __init__(self, recipe: MiniSDRecipe, max_length: int) -> None:
        self.recipe, self.max_length = recipe, max_length

    def batch(self, step: int) -> dict[str, Any]:
        import torch

        from bench.data.generic_world import render_scene

        r = self.recipe
        rng = np.random.default_rng([r.seed, 1, step])
        scenes = [render_scene(r.generic_world_seed, "train", int(i), r.arch.sample_size)
                  for i in rng.integers(0, 10_000_000, size=r.batch_size)]
        drop = rng.random(r.batch_size) < r.caption_dropout
        captions = ["" if d else s[2] for s, d in zip(scenes, drop)]
        targets: dict[int, Any] = {}
        weights = None
        for res in r.aux_resolutions:
            per = [object_word_targets(s[1], res, self.max_length) for s in scenes]
            targets[res] = torch.stack([p[0] for p in per])
            weights = torch.stack([p[1] for p in per])
        assert weights is not None
        weights[torch.from_numpy(drop)] = 0.0
        images = torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2) * 2 - 1
        return {"images": images, "captions": captions, "targets": targets, "weights": weights}


def copy_init_weights(run_dir: Path, weights: Path) -> tuple[str, str]:
    """Copy a shipped ``mini-sd.safetensors`` and the ``tokenizer/`` beside it into ``run_dir/init`` (the run
    then names them relatively, and shipping over the original cannot change what a resumed run starts from).
    Returns (path relative to ``run_dir``, SHA-256)."""
    import shutil

    if not weights.is_file() or not (weights.parent / "tokenizer" / "vocab.json").is_file():
        raise FileNotFoundError(f"--init-weights {weights}: need a mini-sd.safetensors with tokenizer/ beside it")
    digest = file_digest(weights)
    target = run_dir / "init"
    if (target / "mini-sd.safetensors").is_file():
        if file_digest(target / "mini-sd.safetensors") != digest:
            raise ValueError(f"{run_dir} continues other weights than {weights}; use a new --run-dir")
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(weights.parent / "tokenizer", target / "tokenizer", dirs_exist_ok=True)
        shutil.copyfile(weights, target / "mini-sd.safetensors")
    return "init/mini-sd.safetensors", digest


def start_from_shipped(run_dir: Path, weights: Path, sha256: str | None) -> dict[str, Any]:
    """Prepare a continuation run from a shipped ``mini-sd.safetensors``: check its digest, put its text encoder
    (as ``text_encoder_source.safetensors``, in mini-clip's key layout) and the tokenizer beside it into the run
    folder, and return its UNet weights in float32."""
    import shutil

    from safetensors.torch import load_file, save_file

    if not weights.is_file():
        raise FileNotFoundError(f"mini-sd init weights {weights} do not exist")
    if sha256 is not None and file_digest(weights) != sha256:
        raise ValueError(f"{weights} is not the file this run started from (SHA-256 differs from the recipe's {sha256})")
    state = load_file(str(weights))
    run_dir.mkdir(parents=True, exist_ok=True)
    source = run_dir / "text_encoder_source.safetensors"
    if not source.is_file():
        text = {k.removeprefix("text_encoder."): v.float().contiguous() for k, v in state.items()
                if k.startswith("text_encoder.")}
        text = {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in text.items()}
        save_file(text, str(source))
    if not (run_dir / "tokenizer").is_dir():
        shutil.copytree(weights.parent / "tokenizer", run_dir / "tokenizer")
    return {k.removeprefix("unet."): v.float() for k, v in state.items() if k.startswith("unet.")}


def train_mini_sd(run_dir: Path, clip_run: Path, recipe: MiniSDRecipe | None = None, threads: int = 1,
                  minutes: float | None = None) -> Path:
    """Train (or resume) mini-sd in ``run_dir``; returns the path of the final EMA UNet weights.

    Args:
        run_dir: run folder (checkpoints, log, final weights).
        clip_run: mini-clip's run folder (``tokenizer/`` and a stage-1 checkpoint). The text tower is taken
            from ``run_dir / "text_encoder_source.safetensors"`` if present (a snapshot of mini-clip made when
            mini-sd started), else from ``clip_run / "stage1-final.safetensors"`` (then snapshotted there).
        recipe: the recipe (default `MiniSDRecipe()`).
        threads: torch CPU threads.
        minutes: wall-clock budget of the whole run over all sittings (default ``recipe.minutes``).
    """
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from bench.diffusion.attention import AttentionStore, storing_processors
    from bench.foundation.mini_clip import MiniClipRecipe
    from bench.foundation.runs import StepLog, bf16_autocast_pays, load_checkpoint, save_checkpoint

    recipe = recipe or MiniSDRecipe()
    budget = 60.0 * (minutes if minutes is not None else recipe.minutes)
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    final = run_dir / "unet-ema-final.safetensors"
    if final.is_file():
        return final
    source = run_dir / "text_encoder_source.safetensors"
    if recipe.init_weights is not None:
        init_unet = start_from_shipped(run_dir, run_dir / recipe.init_weights, recipe.init_sha256)
        tokenizer = CLIPTokenizer.from_pretrained(str(run_dir / "tokenizer"))
    else:
        tokenizer = CLIPTokenizer.from_pretrained(str(clip_run / "tokenizer"))
        if not source.is_file():
            import shutil

            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(clip_run / "stage1-final.safetensors", source)
    text_encoder = text_encoder_from_clip(source, tokenizer, MiniClipRecipe().arch)
    text_encoder.eval().requires_grad_(False)
    unet = UNet2DConditionModel(**unet_config(recipe.arch, text_encoder.config.hidden_size))
    if recipe.init_weights is not None:
        unet.load_state_dict(init_unet)
    ema = UNet2DConditionModel(**unet_config(recipe.arch, text_encoder.config.hidden_size))
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    both = torch.nn.ModuleDict({"unet": unet, "ema": ema})
    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=0.01)
    step, extra = load_checkpoint(run_dir, both, optimizer)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1))
    store = AttentionStore(cross=True, resolutions=set(recipe.aux_resolutions), mode="last", keep_grad=True)
    unet.set_attn_processor(storing_processors(unet, store, fused=False))
    data = SceneBatches(recipe, tokenizer.model_max_length)
    log = StepLog(run_dir, extra.get("elapsed_s", 0.0))
    alphas = scheduler.alphas_cumprod
    logger.info("***** mini-sd: batch %d, budget %.0f min, %d UNet parameters, resume at step %d *****",
                recipe.batch_size, budget / 60, sum(p.numel() for p in unet.parameters()), step)
    fast_bf16 = bf16_autocast_pays()
    logger.info("bf16 autocast %s (CPU capability %s)", "on" if fast_bf16 else "off", torch.backends.cpu.get_cpu_capability())
    unet.train()
    sums = {"mse": 0.0, "aux": 0.0}
    last_ckpt = time.time()
    while step < recipe.max_steps and log.elapsed < budget:
        progress = log.elapsed / budget
        lr_mult = min(1.0, (step + 1) / recipe.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * lr_mult
        batch = data.batch(step)
        gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        x0 = batch["images"]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            tokens = tokenizer(batch["captions"], padding="max_length", truncation=True, return_tensors="pt")
            cond = text_encoder(input_ids=tokens.input_ids).last_hidden_state
        weights = batch["weights"] * (t < recipe.aux_max_t).float()[:, None]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast_bf16):
            pred = unet(xt, t, encoder_hidden_states=cond).sample
            aux = attention_mask_loss(store, batch["targets"], weights)
        mse = torch.nn.functional.mse_loss(pred.float(), noise)
        loss = mse + recipe.aux_weight * aux.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        store.reset()
        with torch.no_grad():
            decay = min(recipe.ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        step += 1
        sums["mse"] += mse.item()
        sums["aux"] += float(aux.detach())
        if step % 25 == 0:
            log.write(step, mse=sums["mse"] / 25, aux=sums["aux"] / 25, lr=recipe.lr * lr_mult)
            sums = {"mse": 0.0, "aux": 0.0}
        if step % recipe.checkpoint_every == 0 or time.time() - last_ckpt > 300:
            save_checkpoint(run_dir, both, optimizer, step, {"elapsed_s": log.elapsed})
            last_ckpt = time.time()
    save_checkpoint(run_dir, both, optimizer, step, {"elapsed_s": log.elapsed})
    from safetensors.torch import save_file

    save_file({k: v.float().contiguous() for k, v in ema.state_dict().items()}, str(final),
              metadata={"steps": str(step), "elapsed_s": f"{log.elapsed:.0f}"})
    logger.info("mini-sd finished: %d steps in %.1f min", step, log.elapsed / 60)
    return final


if __name__ == "__main__":  # python -m bench.foundation.train_sd RUN_DIR CLIP_RUN [THREADS] [MINUTES]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train_mini_sd(Path(sys.argv[1]), Path(sys.argv[2]), threads=int(sys.argv[3]) if len(sys.argv) > 3 else 1,
                  minutes=float(sys.argv[4]) if len(sys.argv) > 4 else None)
