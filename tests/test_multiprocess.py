"""One run on several processes: `accelerate launch -m bench run` with 2 CPU processes (gloo)."""
import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from bench.runner import BenchError, RunConfig, launched_accelerator, load_shard, one_process_of_several, run_one

TESTS = Path(__file__).resolve().parent
FAST = ["task.segmenters=[unet]", "task.max_epochs=1", "task.n_generate=12"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_samples(work_dir: Path):
    gen = next((work_dir / "generate").iterdir())
    return [s for p in sorted(gen.glob("shard-*.json")) for s in load_shard(p.with_suffix(""))]


def test_two_cpu_processes_split_generation_and_match_one_process(tmp_path):
    port = free_port()
    # accelerate's --cpu launcher starts one process (several need mpirun); --multi_gpu starts them through
    # torchrun, and `--device cpu` makes them CPU processes talking through gloo
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    run = ["-m", "bench", "run", "--task", "seg-aug", "--method", "helpers:GatedFit", "--profile", "smoke",
           "--device", "cpu", "--shard-size", "4", "--threads", "1", "--no-progress",
           *[a for s in FAST for a in ("--set", s)], "--work-dir", str(tmp_path / "multi")]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "MASTER_PORT": str(port),
           "BENCH_TEST_FIT_LOG": str(tmp_path / "fits.txt"), "BENCH_TEST_MAKER_LOG": str(tmp_path / "made.txt")}
    done = subprocess.run([*launch, *run], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("record: ") == 1 and done.stdout.count("stages: ") == 1  # the main process reports
    assert "Traceback" not in done.stderr

    made = defaultdict(list)
    for line in (tmp_path / "made.txt").read_text().splitlines():
        pid, index = line.split()
        made[pid].append(int(index))
    fitter = (tmp_path / "fits.txt").read_text().split()
    assert len(fitter) == 1, "the fit ran more than once"
    others = [pid for pid in made if pid != fitter[0]]
    assert len(made) == 2 and len(others) == 1  # two processes generated; the main one also fitted
    assert sorted(made[fitter[0]]) == [0, 1, 2, 3, 8, 9, 10, 11]  # shards 0 and 2 on the main process
    assert sorted(made[others[0]]) == [4, 5, 6, 7]  # shard 1 on the other

    single, _ = run_one(RunConfig(task="seg-aug", method="helpers:GatedFit", profile="smoke", sets=FAST, shard_size=4,
                                  device="cpu", work_dir=tmp_path / "single", progress=False, threads=1))
    multi_path = tmp_path / "multi" / "records" / f"{single['run_id']}.json"
    multi = json.loads(multi_path.read_text())
    assert multi["n"] == single["n"] and multi["n"]["generated"] == 12
    assert multi["metrics"] == single["metrics"] and multi["per_model"] == single["per_model"]
    assert multi["cached"] == single["cached"] == {"fit": False, "generate": False, "evaluate": False}
    got, want = shard_samples(tmp_path / "multi"), shard_samples(tmp_path / "single")
    assert [s.meta["index"] for s in got] == [s.meta["index"] for s in want] == list(range(12))
    assert all(torch.equal(x.image, y.image) and torch.equal(x.mask, y.mask) for x, y in zip(got, want))


def test_a_several_process_launch_that_started_one_process_is_recognised():
    # what `accelerate launch --cpu --num_processes 2 ...` (accelerate 1.16, no mpirun) gives its single process
    lone = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
            "ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO"}
    assert one_process_of_several(lone)
    assert not one_process_of_several({k: v for k, v in lone.items() if k != "MASTER_ADDR"})  # --num_processes 1
    assert not one_process_of_several({**lone, "WORLD_SIZE": "2"})  # through torchrun (--multi_gpu)
    assert not one_process_of_several({**lone, "OMPI_COMM_WORLD_SIZE": "2"})  # through mpirun
    assert not one_process_of_several({"MASTER_ADDR": "10.0.0.1"})  # not accelerate launch


def test_several_processes_without_accelerate_is_one_error_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it
    monkeypatch.setitem(sys.modules, "accelerate", None)  # not installed
    with pytest.raises(BenchError, match=r"needs the accelerate package: pip install 'medsynth-bench\[diffusion\]'"):
        launched_accelerator(cpu=True)
