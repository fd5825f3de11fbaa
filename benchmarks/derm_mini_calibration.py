"""Calibrate derm-mini's difficulty so that the seg-aug S_1k twin's real-only U-Net IoU sits at the thesis's.

Target: thesis Table 4.5, S_1k (1000 real ISIC 2018 pairs), U-Net, real data only ("Original"): IoU 0.716. The mini
twin is docs/reproduce/ch4-seg-mini.yaml with ``task.n_real=200`` (the thesis ratio 1000/2594 of a 520-pair train
split). Every calibration run is an ordinary ``bench run --task seg-aug --method real-only`` of that protocol with
the U-Net only (its real-only arm is the same with or without the other segmenters: same index, same
initialisation, the segmenter list is not part of the arm's key) and no transfer set (scored after training, it
does not change the test IoU), at one thread, each through the core-0 queue lock when ``--lock`` is given.

Only real-only runs are read, never a method's result. The search walks ``Difficulty.level(t)``
(bench/data/derm_mini.py: every knob moves together from the default world at t = 0): given levels are run as they
are; ``--search`` then interpolates between the two bracketing levels (secant on IoU) until a level lands within
``--tolerance`` of the target or ``--max-runs`` is reached. Every run is appended to ``--log`` (JSON lines) and
the whole log is rendered as a table in ``--table`` (both committed).

    python benchmarks/derm_mini_calibration.py --levels 0.5 --search --lock LOCKFILE --cpu 0 \\
        --work-dir runs/calib
    python benchmarks/derm_mini_calibration.py --difficulty calibrated --seeds 0 1 2 --work-dir ...   # final check
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_IOU = 0.716  # thesis Table 4.5, S_1k, U-Net, Original
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "docs" / "reproduce" / "ch4-seg-mini.yaml"
SIZES = {"train": 520, "val": 100, "test": 300}


def run_one(difficulty: object, seed: int, args: argparse.Namespace) -> dict:
    """One real-only U-Net run of the S_1k twin at ``difficulty``; returns the log row."""
    options = {"sizes": SIZES, "difficulty": difficulty}
    cmd = [sys.executable, "-m", "bench", "run", "--task", "seg-aug", "--method", "real-only", "--profile", "mini",
           "--config", str(CONFIG), "--seed", str(seed), "--threads", "1", "--work-dir", str(args.work_dir),
           "--no-progress",
           "--set", "task.n_real=200", "--set", "task.segmenters=[unet]", "--set", "task.transfer_dataset=null",
           "--set", f"task.dataset_options={json.dumps(options)}"]
    if args.max_epochs:
        cmd += ["--set", f"task.max_epochs={args.max_epochs}"]
    if args.cpu is not None:
        cmd = ["taskset", "-c", str(args.cpu), *cmd]
    if args.lock:
        cmd = ["flock", args.lock, *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time()
    out = subprocess.run(cmd, cwd=args.cwd or ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench run failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    records = sorted(Path(args.work_dir, "records").glob("seg-aug__real-only__*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text())
    unet = record["per_model"]["unet"]
    training = record["comparisons"]["training"]["unet"]["real-only"]
    return {"difficulty": difficulty, "seed": seed, "unet_iou": round(unet["iou"], 4), "unet_dice": round(unet["dice"], 4),
            "best_epoch": training["best_epoch"], "epochs": training["epochs"],
            "max_epochs": record["config"]["task"]["max_epochs"], "minutes": round((time.time() - start) / 60, 1),
            "run_id": record["run_id"], "git": record["environment"].get("git_commit"),
            "created": record.get("created")}


def render_table(rows: list[dict], path: Path) -> None:
    lines = ["# derm-mini difficulty calibration (benchmarks/derm_mini_calibration.py)", "",
             f"Target: thesis Table 4.5 S_1k U-Net IoU (real data only) {TARGET_IOU}, tolerance 0.03. Protocol: seg-aug "
             "mini, docs/reproduce/ch4-seg-mini.yaml, task.n_real=200, U-Net only, real-only, one thread. Every "
             "run made is listed, in order.", "",
             "| # | difficulty | seed | max epochs | best epoch / run | U-Net IoU | U-Net Dice | IoU - 0.716 | wall minutes (incl. queue wait) | git |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        d = r["difficulty"]
        name = d if isinstance(d, str) else ", ".join(f"{k}={v}" for k, v in d.items())
        lines.append(f"| {i} | {name} | {r['seed']} | {r['max_epochs']} | {r['best_epoch']} / {r['epochs']} | "
                     f"{r['unet_iou']:.4f} | {r['unet_dice']:.4f} | {r['unet_iou'] - TARGET_IOU:+.4f} | {r['minutes']} | "
                     f"{(r.get('git') or '')[:12]} |")
    by_difficulty: dict[str, list[float]] = {}
    for r in rows:
        by_difficulty.setdefault(json.dumps(r["difficulty"], sort_keys=True), []).append(r["unet_iou"])
    several = {k: v for k, v in by_difficulty.items() if len(v) > 1}
    if several:
        lines += ["", "Over seeds (mean ± sample std):", ""]
        for k, v in several.items():
            mean, std = statistics.fmean(v), statistics.stdev(v)
            verdict = "within" if abs(mean - TARGET_IOU) <= 0.03 else "outside"
            lines.append(f"- {k}: U-Net IoU {mean:.4f} ± {std:.4f} over {len(v)} seeds; {mean - TARGET_IOU:+.4f} from "
                         f"{TARGET_IOU}, {verdict} the 0.03 tolerance")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=float, nargs="*", default=[], help="Difficulty.level(t) values to run first")
    parser.add_argument("--difficulty", default=None, help="a preset name to run instead of levels (final check)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--search", action="store_true", help="then interpolate between the bracketing levels")
    parser.add_argument("--tolerance", type=float, default=0.015, help="stop the search within this of the target")
    parser.add_argument("--max-runs", type=int, default=6)
    parser.add_argument("--max-epochs", type=int, default=None, help="override task.max_epochs (not for the final check)")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--cwd", type=Path, default=None, help="checkout to run bench from (a clean worktree)")
    parser.add_argument("--lock", default=None, help="flock file serialising CPU-heavy runs")
    parser.add_argument("--cpu", type=int, default=None, help="taskset core")
    parser.add_argument("--log", type=Path, default=ROOT / "benchmarks" / "derm_mini_calibration.jsonl")
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "derm_mini_calibration.md")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.log.read_text().splitlines()] if args.log.exists() else []

    def record(row: dict) -> dict:
        rows.append(row)
        with args.log.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        render_table(rows, args.table)
        print(json.dumps(row), flush=True)
        return row

    if args.difficulty:
        for seed in args.seeds:
            record(run_one(args.difficulty, seed, args))
        return
    done: dict[float, float] = {}
    for t in args.levels:
        done[t] = record(run_one({"level": t}, args.seeds[0], args))["unet_iou"]
    runs = len(done)
    while args.search and runs < args.max_runs:
        if any(abs(v - TARGET_IOU) <= args.tolerance for v in done.values()):
            break
        easier = [t for t, v in done.items() if v > TARGET_IOU]
        harder = [t for t, v in done.items() if v < TARGET_IOU]
        if easier and harder:
            lo, hi = max(easier), min(harder)
            t = lo + (hi - lo) * (done[lo] - TARGET_IOU) / (done[lo] - done[hi])
        elif easier:
            t = min(2.0, max(easier) * 1.6 + 0.1)
        else:
            t = min(harder) / 2
        t = round(t, 3)
        done[t] = record(run_one({"level": t}, args.seeds[0], args))["unet_iou"]
        runs += 1


if __name__ == "__main__":
    main()
