"""The contributor's path of docs/submitting.md, end to end (issue 24): the guide's package built in a temporary
folder and installed with pip (offline, into a target folder on PYTHONPATH, so the test environment is left as it
was), found through the `bench.methods` entry point, its plain mini run planned into the shipped records' protocol,
run in smoke, submitted, and shown as a column of thesis Table 4.5 beside the paper's methods."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import RunConfig, run_one

DOC = Path(__file__).resolve().parents[2] / "docs" / "submitting.md"
# Table 4.5's S_1k rows ask n_real = 200 in the mini (and smoke) profile: a smoke run over 200 training pairs is the
# tiny twin of the S_1k protocol, so both the paper's real-only arm and the contributed method can fill those rows
# (one segmenter, 3 epochs: the test checks the path, not the scores).
SMOKE_S1K = ["task.dataset_options={sizes: {train: 200, val: 16, test: 24}}", "task.segmenters=[unet]",
             "task.max_epochs=3", "task.patience=3"]


def block(lang: str) -> str:
    (text,) = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return text


def commands(prefix: str) -> list[list[str]]:
    """The guide's command lines starting with ``prefix`` (inside its plain code blocks), split into words."""
    out, fence = [], None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = line[3:] if fence is None else None
        elif fence == "" and " ".join(line.split("#")[0].split()).startswith(prefix):
            out.append(line.split("#")[0].split())
    return out


@pytest.mark.slow
def test_the_guides_package_lands_beside_the_shipped_methods(tmp_path) -> None:
    pkg = tmp_path / "my-lesion-gen"
    (pkg / "my_lesion_gen").mkdir(parents=True)
    (pkg / "my_lesion_gen" / "__init__.py").write_text("")
    (pkg / "my_lesion_gen" / "method.py").write_text(block("python"))
    (pkg / "my_lesion_gen" / "config.yaml").write_text(block("yaml"))
    (pkg / "pyproject.toml").write_text(block("toml"))
    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(pkg)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "COLUMNS": "120"}

    def bench(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    assert any(line.split()[:2] == ["tone-shift", "*"] for line in bench("list").stdout.splitlines())

    # the guide's first command, word for word: the plain mini run is the shipped records' S_1k-twin protocol
    (dry,) = commands("bench run --task seg-aug --method tone-shift --profile mini --seed 0 --dry-run")
    planned = bench(*dry[1:]).stdout
    assert ('protocol: seg-aug/mini@v2 "S_1k twin, 4 segmenters, calibrated world" (6c729d3b; the shipped records\' '
            'section)') in planned
    assert not (tmp_path / "bench-runs").exists()  # a dry run writes nothing

    # smoke, at the tiny S_1k twin: the paper's real-only arm (in this process) and the package's method (through
    # its entry point), then the guide's submit and table commands with the smoke profile
    work = tmp_path / "bench-runs"
    run_one(RunConfig(task="seg-aug", method="real-only", profile="smoke", sets=SMOKE_S1K, work_dir=work,
                      progress=False))
    ran = bench("run", "--task", "seg-aug", "--method", "tone-shift", "--profile", "smoke", "--seed", "0",
                *(w for s in SMOKE_S1K for w in ("--set", s)), "--no-progress", "--quiet").stdout
    assert "| protocol " in ran and "no named protocol" in ran  # smoke with --set: not a leaderboard protocol
    records = sorted(str(p) for p in (work / "records").glob("seg-aug__*.json"))
    assert len(records) == 2
    submitted = bench("submit", "--allow-smoke", "--leaderboard", str(tmp_path / "lb"), *records).stdout
    assert submitted.strip().splitlines()[-1] == "2 accepted, 0 refused"
    (table,) = commands("bench table thesis-4.5 --profile mini --with tone-shift")
    shown = bench(*table[1:3], "--profile", "smoke", *table[5:], "--records", str(tmp_path / "lb")).stdout
    head = next(line for line in shown.splitlines() if line.startswith("| Row"))
    assert head.endswith("| tone-shift (contributed) |")
    rows = {line.split(" | ")[0].strip("| "): line for line in shown.splitlines() if line.startswith("| IoU")}
    unet = rows["IoU ↑ · S_1k · U-Net"].rstrip(" |").split(" | ")
    assert re.fullmatch(r"0\.\d{3} \(n=1\)", unet[2]) and re.fullmatch(r"0\.\d{3} \(n=1\)", unet[-1])
    assert rows["IoU ↑ · S_2.5k · U-Net"].rstrip(" |").endswith("no run")
    protocol = next(line for line in shown.splitlines() if line.startswith("tone-shift (contributed): "))
    assert protocol.startswith("tone-shift (contributed): 2 of 16 cells from its records of protocol ")
    assert protocol.endswith(", the paper cells' beside them.")
