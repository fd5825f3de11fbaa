"""Training of mini-clip from its recipe (stage 1: generic world + derm-mini; stage 2: + cxr-mini)."""
from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.foundation.mini_clip import MiniClip, MiniClipRecipe, clip_config, contrastive_loss

logger = logging.getLogger(__name__)


class ClipData:
    """Batches of (images (N, 3, 64, 64) in [0, 1], captions) from the recipe's sources, deterministic per step."""

    def __init__(self, recipe: MiniClipRecipe, with_cxr: bool) -> None:
        import torch

        from bench.data.derm_mini import caption as derm_caption
        from bench.data.derm_mini import render as derm_render

        self.recipe = recipe
        size = recipe.arch.image_size
        derm = [derm_render(recipe.derm_world_seed, 0, i, size) for i in range(recipe.derm_train_size)]
        self.derm_images = torch.from_numpy(np.stack([d[0] for d in derm])).permute(0, 3, 1, 2).contiguous()
        self.derm_captions = [derm_caption(d[2]) for d in derm]
        self.cxr_images = None
        if with_cxr:
            from bench.data.cxr_mini import CxrMini

            samples = CxrMini(sizes={"train": recipe.cxr_train_size}, world_seed=recipe.cxr_world_seed).load("train")
            items = [samples[i] for i in range(len(samples))]
            self.cxr_images = torch.stack([s.image.expand(3, -1, -1) for s in items])
            self.cxr_captions = [s.report for s in items]

    def batch(self, step: int, mix: tuple[tuple[str, float], ...]) -> tuple[Any, list[str], list[tuple[int, int]]]:
        """Images (N, 3, 64, 64) in [0, 1], captions, and the (start, end) rows of each source."""
        import torch
        import torch.nn.functional as F

        from bench.data.generic_world import render_scene

        rng = np.random.default_rng([self.recipe.seed, step])
        b = self.recipe.batch_size
        counts = {name: int(round(w * b)) for name, w in mix}
        images, captions, spans = [], [], []
        for name, n in counts.items():
            spans.append((len(captions), len(captions) + n))
            if name == "generic":
                scenes = [render_scene(self.recipe.generic_world_seed, "train", int(i), 32)
                          for i in rng.integers(0, 10_000_000, size=n)]
                x = torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2)
                images.append(F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False))
                captions += [s[2] for s in scenes]
            elif name == "derm":
                idx = rng.integers(0, len(self.derm_captions), size=n)
                x = self.derm_images[idx]
                flip = torch.from_numpy(rng.random(n) < 0.5)
                x[flip] = x[flip].flip(-1)
                images.append(x)
                captions += [self.derm_captions[i] for i in idx]
            elif name == "cxr":
                assert self.cxr_images is not None
                idx = rng.integers(0, len(self.cxr_captions), size=n)
                images.append(self.cxr_images[idx])
                captions += [self.cxr_captions[i] for i in idx]
            else:
                raise ValueError(f"unknown mini-clip source '{name}'")
        return torch.cat(images).clamp(0, 1), captions, spans


def train_mini_clip(run_dir: Path, recipe: MiniClipRecipe | None = None, stage: int = 1, threads: int = 2,
                    max_minutes: float | None = None) -> Path:
    """Train (or resume) mini-clip stage ``stage`` in ``run_dir``; returns the path of the stage's weights.

    Stage 2 starts from stage 1's final weights. The tokenizer is written to ``run_dir / "tokenizer"``.
    """
    import torch

    from bench.foundation.runs import StepLog, bf16_autocast_pays, cosine_lr, load_checkpoint, save_checkpoint
    from bench.foundation.tokenizer import build_clip_tokenizer, mini_world_words

    recipe = recipe or MiniClipRecipe()
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed + stage)
    tok_dir = run_dir / "tokenizer"
    shipped = Path(__file__).resolve().parent / "weights" / "tokenizer"
    if not (tok_dir / "vocab.json").is_file() and (shipped / "vocab.json").is_file():
        # BPE tie-breaking in `tokenizers` is not reproducible across processes, so a remake reuses the
        # shipped vocabulary (the one the shipped weights were trained with) when it exists.
        import shutil

        shutil.copytree(shipped, tok_dir, dirs_exist_ok=True)
    if (tok_dir / "vocab.json").is_file():
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    else:
        tokenizer = build_clip_tokenizer(mini_world_words(), tok_dir, model_max_length=recipe.arch.max_length)
    from transformers import CLIPModel

    model = CLIPModel(clip_config(recipe.arch, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id))
    name = f"stage{stage}"
    final = run_dir / f"{name}-final.safetensors"
    if final.is_file():
        return final
    if stage == 2:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(run_dir / "stage1-final.safetensors")))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98))
    step, extra = load_checkpoint(run_dir, model, optimizer, name=name)
    total = recipe.stage1_steps if stage == 1 else recipe.stage2_steps
    mix = recipe.stage1_mix if stage == 1 else recipe.stage2_mix
    data = ClipData(recipe, with_cxr=stage == 2)
    wrapper = MiniClip(model, tokenizer)
    log = StepLog(run_dir, extra.get("elapsed_s", 0.0))
    model.train()
    logger.info("***** mini-clip stage %d: %d steps, batch %d, %d parameters *****", stage, total, recipe.batch_size,
                sum(p.numel() for p in model.parameters()))
    while step < total:
        if max_minutes is not None and log.elapsed - extra.get("elapsed_s", 0.0) > 60 * max_minutes:
            logger.warning("mini-clip stage %d stopped at step %d by the time budget", stage, step)
            break
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * cosine_lr(step, total, recipe.warmup_steps if stage == 1 else 20)
        images, captions, sources = data.batch(step + 100_000 * (stage - 1), mix)
        groups = torch.tensor([zlib.crc32(c.encode()) for c in captions])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast_pays()):
            img = wrapper.image_embeddings(images)
            # Each source's captions are padded to their own longest (generic captions are short, reports long).
            txt = torch.cat([wrapper.text_embeddings(captions[a:b]) for a, b in sources])
        loss = contrastive_loss(img.float(), txt.float(), model.logit_scale.exp().clamp(max=100), groups)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 20 == 0 or step == 1:
            log.write(step, loss=loss.item(), scale=float(model.logit_scale.exp()))
        if step % recipe.checkpoint_every == 0 or step == total:
            save_checkpoint(run_dir, model, optimizer, step, {"elapsed_s": log.elapsed}, name=name)
    if step >= total:
        from safetensors.torch import save_file

        save_file({k: v.float().contiguous() for k, v in model.state_dict().items()}, str(final),
                  metadata={"elapsed_s": f"{log.elapsed:.0f}", "steps": str(step)})
        return final
    return run_dir / f"{name}.safetensors"


if __name__ == "__main__":  # python -m bench.foundation.train_clip RUN_DIR STAGE
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train_mini_clip(Path(sys.argv[1]), stage=int(sys.argv[2]), threads=int(sys.argv[3]) if len(sys.argv) > 3 else 2)
