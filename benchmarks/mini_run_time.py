"""Wall time of default mini runs against a limit (issue 21: "a mini run takes at most 15 minutes on 2 cores").

Each run is an ordinary `bench run --profile mini --threads T` in its own fresh work dir (nothing cached, nothing
shared between runs), so the time is what a user sees on a first run: fit, generate, evaluate and the real-only arm.
The default set is issue 21's three generators on the largest seg-aug mini twins their papers use: MedDiff-FT and
T2I-Adapter on busi-mini (train 300; ddti-mini 300, derm-mini 200 at the mini profile's sizes, ph2-mini 120),
DiffBoost on ct-spleen-mini (train 345 slices; mri-prostate-mini 155). The fit (a fixed number of steps) and the
generation (the task's n_generate, 200) do not depend on the twin, and the evaluation grows with the training set,
so the largest twin bounds the others. Any other run is given as TASK:METHOD[:DATASET].

Run on a quiet machine (no other torch job: two jobs on 2 cores slow each other several-fold):
  python benchmarks/mini_run_time.py                      # the three default runs, 2 threads, about 35 minutes
  python benchmarks/mini_run_time.py seg-aug:diffboost:busi-mini --threads 1
  python benchmarks/mini_run_time.py --smoke              # smoke profile: checks the script, measures nothing
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_RUNS = ["seg-aug:meddiff-ft:busi-mini", "seg-aug:t2i-adapter:busi-mini", "seg-aug:diffboost:ct-spleen-mini"]


def parse_run(text: str) -> tuple[str, str, str | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SystemExit(f"mini_run_time: '{text}' is not TASK:METHOD[:DATASET]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def time_run(task: str, method: str, dataset: str | None, profile: str, threads: int, work: Path) -> dict:
    cmd = [sys.executable, "-m", "bench", "run", "--task", task, "--method", method, "--profile", profile,
           "--threads", str(threads), "--no-progress", "--quiet", "--work-dir", str(work)]
    if dataset:
        cmd += ["--dataset", dataset]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"mini_run_time: {' '.join(cmd[2:])} failed: {done.stderr.strip().splitlines()[-1:]}")
    (record,) = [json.loads(p.read_text()) for p in (work / "records").glob("*.json")]
    return {"wall": wall, "run_id": record["run_id"], "timings": record["timings"],
            "peak_mb": max((record.get("peak_memory_mb") or {}).values(), default=float("nan"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=DEFAULT_RUNS, help="TASK:METHOD[:DATASET] (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit-min", type=float, default=15.0, help="the limit each run is read against")
    parser.add_argument("--smoke", action="store_true", help="smoke profile: checks the script, measures nothing")
    args = parser.parse_args(argv)
    runs = [parse_run(r) for r in args.runs]
    profile = "smoke" if args.smoke else "mini"
    root = Path(tempfile.mkdtemp(prefix="mini-run-time-"))
    print(f"{len(runs)} {profile} run(s) at {args.threads} thread(s) on {len(os.sched_getaffinity(0))} core(s); "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    print(f"{'run':<40} {'wall':>8} {'fit':>7} {'generate':>9} {'evaluate':>9} {'peak MB':>8}  verdict")
    over = []
    try:
        for i, (task, method, dataset) in enumerate(runs):
            name = ":".join(filter(None, (task, method, dataset)))
            out = time_run(task, method, dataset, profile, args.threads, root / str(i))
            t = out["timings"]
            verdict = "within" if out["wall"] <= args.limit_min * 60 else "OVER"
            if verdict == "OVER":
                over.append(name)
            print(f"{name:<40} {out['wall'] / 60:6.1f}m {t.get('fit', 0):6.0f}s {t.get('generate', 0):8.0f}s "
                  f"{t.get('evaluate', 0):8.0f}s {out['peak_mb']:8.0f}  {verdict} {args.limit_min:g} min  "
                  f"({out['run_id']})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if over and not args.smoke:
        raise SystemExit(f"over {args.limit_min:g} min: {', '.join(over)}")


if __name__ == "__main__":
    main()
