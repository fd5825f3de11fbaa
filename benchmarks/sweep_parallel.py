"""Wall time of 4 single-thread mini runs as one sequential queue vs `bench sweep --workers 2` (local launcher).

The four runs are independent (different tasks and methods, nothing shared through the cache) and take about 1-3
minutes each at one thread (shipped records' stage timings, 2026-12-05): seg-aug real-only (mini default:
train 200, U-Net + Attention U-Net), derm-quality sl-stylegan, derm-cls real-only (four classifiers,
docs/reproduce/ch4-cls-mini.yaml), derm-quality pgan; listed longest first, so two workers finish together.

Each arm runs in a fresh temporary work dir, so nothing is shared between arms through the cache:
  sequential   `python -m bench run ... --threads 1` four times, one after another (what ch4-mini.sh did)
  parallel     `python -m bench sweep FILE --workers 2 --threads 1`: two workers, each pinned to its own core
Both arms must give the same records (run ids and metrics); the script checks it. Goal on 2 cores: ratio >= 1.7.

Run on a quiet machine:  python benchmarks/sweep_parallel.py            (about 12 minutes on 2 cores)
Check that it works:     python benchmarks/sweep_parallel.py --smoke    (smoke profile, about a minute)
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

REPO = Path(__file__).resolve().parents[1]
CLS_CONFIG = REPO / "docs" / "reproduce" / "ch4-cls-mini.yaml"
#: (name, task, method, extra bench run arguments), longest first
RUNS = [
    ("seg-real-only", "seg-aug", "real-only", []),
    ("quality-sl-stylegan", "derm-quality", "sl-stylegan", []),
    ("cls-real-only", "derm-cls", "real-only", ["--config", str(CLS_CONFIG)]),
    ("quality-pgan", "derm-quality", "pgan", []),
]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def sequential(work: Path, profile: str) -> tuple[float, dict[str, float]]:
    each = {}
    start = time.perf_counter()
    for name, task, method, extra in RUNS:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", "run", "--task", task, "--method", method, "--profile", profile,
                        "--threads", "1", "--no-progress", "--quiet", "--work-dir", str(work), *extra],
                       env=env(), check=True, stdout=subprocess.DEVNULL)
        each[name] = time.perf_counter() - t0
        print(f"  sequential  {name:<20} {each[name]:7.1f} s", flush=True)
    return time.perf_counter() - start, each


def parallel(work: Path, profile: str, workers: int) -> tuple[float, dict[str, float]]:
    sweep = work.parent / "sweep_parallel.yaml"
    lines = ["name: sweep-parallel", f"defaults: {{profile: {profile}, threads: 1}}", "runs:"]
    for name, task, method, extra in RUNS:
        config = f", config: {extra[1]}" if extra else ""
        lines.append(f"  - {{name: {name}, task: {task}, method: {method}{config}}}")
    sweep.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "sweep", str(sweep), "--workers", str(workers), "--threads", "1",
                    "--work-dir", str(work)], env=env(), check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - start
    status = json.loads((work / "sweeps" / "sweep-parallel" / "status.json").read_text())
    each = {r["name"]: r["elapsed_s"] for r in status["runs"]}
    for name, seconds in each.items():
        print(f"  parallel    {name:<20} {seconds:7.1f} s", flush=True)
    return total, each


def records(work: Path) -> dict[str, dict]:
    out = {}
    for path in (work / "records").glob("*.json"):
        r = json.loads(path.read_text())
        out[r["run_id"]] = r["metrics"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="smoke-profile runs: checks the script, measures nothing")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dirs")
    args = parser.parse_args(argv)
    profile = "smoke" if args.smoke else "mini"
    root = Path(tempfile.mkdtemp(prefix="sweep-parallel-"))
    try:
        cores = len(os.sched_getaffinity(0))
        print(f"4 single-thread {profile} runs on {cores} core(s); load average {os.getloadavg()[0]:.2f} at start")
        seq_total, _ = sequential(root / "sequential", profile)
        par_total, _ = parallel(root / "parallel", profile, args.workers)
        same = records(root / "sequential") == records(root / "parallel")
        print(f"sequential queue:          {seq_total:7.1f} s")
        print(f"local launcher, {args.workers} workers: {par_total:7.1f} s")
        print(f"ratio: {seq_total / par_total:.2f}x (goal >= 1.7x on 2 cores); "
              f"records equal: {'yes' if same else 'NO'}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if not same:
            raise SystemExit("the two arms gave different records")
    finally:
        if args.keep:
            print(f"work dirs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
