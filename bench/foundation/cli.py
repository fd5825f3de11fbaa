"""``bench foundation``: remake, ship and evaluate the mini foundation models (mini-clip, mini-sd), and ship
DiffBoost's mini pretrained ControlNet (``diffboost-controlnet-mini``: its remake is a DiffBoost run, see its card).

Examples:
    bench foundation train mini-clip --run-dir runs/foundation        # stage 1 then stage 2, resumable
    bench foundation train mini-sd --run-dir runs/foundation --minutes 68
    bench foundation train mini-sd --run-dir runs/foundation-v2 --init-weights v1/mini-sd.safetensors --minutes 120
    bench foundation ship mini-sd --run-dir runs/foundation            # write bench/foundation/weights/
    bench foundation ship diffboost-controlnet-mini --run-dir W/cache/diffboost-pretrain/<key>
    bench foundation eval mini-clip
    bench foundation eval mini-sd --quick
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Mini foundation models: train (resumable), ship the weights, reproduce the quality figures.",
                  no_args_is_help=True)
NAMES = ("mini-clip", "mini-sd")
SHIPPED = (*NAMES, "diffboost-controlnet-mini")


def _check_name(name: str, valid: tuple[str, ...] = NAMES) -> None:
    if name not in valid:
        raise typer.BadParameter(f"unknown foundation model '{name}'; valid: {', '.join(valid)}")


@app.command()
def train(name: str = typer.Argument(..., help="mini-clip or mini-sd"),
          run_dir: Path = typer.Option(Path("runs/foundation"), help="Parent of the run folders (checkpoints, logs)."),
          threads: int = typer.Option(1, help="torch CPU threads (1 is fastest on a busy 2-core machine)."),
          minutes: Optional[float] = typer.Option(None, help="mini-sd wall-clock budget (default: the recipe's)."),
          init_weights: Optional[Path] = typer.Option(
              None, help="mini-sd only: continue from this mini-sd.safetensors (tokenizer/ beside it) with the "
                         "continuation recipe (MiniSDRecipe.continuation) instead of training from scratch.")
          ) -> None:
    """Remake a model from its recipe; rerunning resumes from the last checkpoint.

    mini-sd needs mini-clip's stage 1 (its frozen text encoder); it is trained first if missing.
    """
    import logging

    _check_name(name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    clip_run = run_dir / "mini-clip"
    from bench.foundation.train_clip import train_mini_clip

    if name == "mini-clip":
        train_mini_clip(clip_run, stage=1, threads=threads)
        path = train_mini_clip(clip_run, stage=2, threads=threads)
    elif init_weights is not None:
        from bench.foundation.mini_sd import MiniSDRecipe
        from bench.foundation.train_sd import copy_init_weights, train_mini_sd

        sd_run = run_dir / "mini-sd"
        relative, digest = copy_init_weights(sd_run, init_weights)
        recipe = MiniSDRecipe.continuation(relative, digest, minutes if minutes is not None else 120.0)
        path = train_mini_sd(sd_run, clip_run, recipe, threads=threads)
    else:
        train_mini_clip(clip_run, stage=1, threads=threads)
        from bench.foundation.train_sd import train_mini_sd

        path = train_mini_sd(run_dir / "mini-sd", clip_run, threads=threads, minutes=minutes)
    typer.echo(f"{name}: {path}")


@app.command()
def ship(name: str = typer.Argument(..., help="mini-clip, mini-sd or diffboost-controlnet-mini"),
         run_dir: Path = typer.Option(Path("runs/foundation"), help="Parent of the run folders (diffboost-controlnet-"
                                      "mini: the pretrained ControlNet folder a DiffBoost run cached)."),
         weights_dir: Optional[Path] = typer.Option(None, help="Target folder (default: the package's weights).")
         ) -> None:
    """Write the shipped float16 weights of a trained model."""
    _check_name(name, SHIPPED)
    from bench.diffusion.models import WEIGHTS_DIR
    from bench.foundation.ship import ship_diffboost_controlnet, ship_mini_clip, ship_mini_sd

    target = weights_dir or WEIGHTS_DIR
    if name == "diffboost-controlnet-mini":
        if not (run_dir / "config.json").is_file():
            raise typer.BadParameter(f"{run_dir} holds no pretrained ControlNet (config.json); pass the folder "
                                     "<work dir>/cache/diffboost-pretrain/<key> of a DiffBoost run", param_hint="--run-dir")
        path = ship_diffboost_controlnet(run_dir, target)
    elif name == "mini-clip":
        path = ship_mini_clip(run_dir / "mini-clip", target)
    else:
        path = ship_mini_sd(run_dir / "mini-sd", target)
    typer.echo(f"wrote {path}")


@app.command("eval")
def evaluate(name: str = typer.Argument(..., help="mini-clip or mini-sd"),
             weights_dir: Optional[Path] = typer.Option(None, help="Weights folder (default: the package's)."),
             quick: bool = typer.Option(False, help="Fewer scenes and prompts (mini-sd)."),
             threads: int = typer.Option(1, help="torch CPU threads."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Reproduce the quality figures stated in the model card."""
    import torch

    _check_name(name)
    torch.set_num_threads(threads)
    from bench.diffusion.models import load_mini_clip, load_mini_sd
    from bench.foundation.evaluate import eval_mini_clip, eval_mini_sd

    clip = load_mini_clip(weights_dir)
    figures = eval_mini_clip(clip) if name == "mini-clip" else eval_mini_sd(load_mini_sd(weights_dir), clip, quick)
    if as_json:
        typer.echo(json.dumps(figures, indent=1))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        typer.echo(f"{key:<{width}}  {value:.4f}")


if __name__ == "__main__":  # python -m bench.foundation.cli
    app()
