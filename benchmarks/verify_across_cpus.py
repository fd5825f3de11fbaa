"""How far shipped mini records move when rerun with other CPU kernels: the measurement behind `bench verify`'s
tolerance (issue 18).

Reruns each given record with `bench verify` (its own configs, seed and thread count) in a kept work dir and prints,
side by side, how far the rerun moved: record-level values (headline metrics, per-model values, comparisons) and
per-sample scores, one by one and as means per model, arm and split (what `bench verify` compares across
environments), against the tolerance (abs 0.01 for values in [0, 1], 5 % relative otherwise).

    python benchmarks/verify_across_cpus.py results/leaderboard/cxr__noise__*.json ... \\
        --work-dir runs/verify-cpus --out benchmarks/verify_across_cpus.md
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any


def _numbers(flat: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _moved(a: dict[str, float], b: dict[str, float]) -> tuple[int, int, float, str]:
    """(values over tolerance, values compared, largest move in [0, 1]-bounded values, its key)."""
    from bench.leaderboard.verify import _close

    keys = sorted(set(a) & set(b))
    over = sum(not _close(a[k], b[k], exact=False) for k in keys)
    bounded = [(abs(a[k] - b[k]), k) for k in keys if 0 <= min(a[k], b[k]) and max(a[k], b[k]) <= 1]
    worst = max(bounded, default=(0.0, "-"))
    return over, len(keys), worst[0], worst[1]


def _rows(path: Path | None) -> list[dict[str, str]]:
    if path is None or not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def measure(record_path: Path, work_dir: Path, keep_stamp: bool = False) -> dict[str, Any]:
    from bench.leaderboard.verify import _flatten, _group_means, _number, stamp, verify

    record = json.loads(record_path.read_text())
    result = verify(record_path, work_dir=work_dir)
    rerun = json.loads((work_dir / "records" / f"{result.rerun_id}.json").read_text())
    if keep_stamp and result.matched:
        stamp(record_path, result)
    levels = {}
    for section in ("metrics", "per_model", "comparisons"):
        levels[section] = _moved(_numbers(_flatten("", record.get(section, {}))),
                                 _numbers(_flatten("", rerun.get(section, {}))))
    from bench.registry import TASKS

    categorical = tuple(getattr(getattr(TASKS.get(record["task"]["id"]), "sample_scores", None), "confusion", None) or ())
    a = _rows(record_path.parent / record["per_sample_file"]) if record.get("per_sample_file") else []
    b = _rows(work_dir / "records" / rerun["per_sample_file"]) if rerun.get("per_sample_file") else []
    singles = {}
    for i, (ra, rb) in enumerate(zip(a, b)):
        for k in ra:
            x, y = _number(ra[k]), _number(rb.get(k))
            if (k not in categorical and isinstance(x, float) and isinstance(y, float) and math.isfinite(x)
                    and math.isfinite(y)):
                singles[f"{i}.{k}"] = (x, y)
    levels["per-sample, one by one"] = _moved({k: v[0] for k, v in singles.items()}, {k: v[1] for k, v in singles.items()})
    levels["per-sample means"] = _moved(_group_means(a, categorical), _group_means(b, categorical))
    return {"run_id": record["run_id"], "made": f"{record['environment'].get('cpu_capability')}, "
            f"{record['environment'].get('torch_threads')} thr", "verdict": result.summary(), "levels": levels,
            "matched": result.matched}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+")
    parser.add_argument("--work-dir", type=Path, required=True, help="kept: one folder per record")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--stamp", action="store_true", help="keep <run_id>.verified.yaml beside each matched record")
    args = parser.parse_args()
    lines = [f"# Shipped mini records rerun on {torch.backends.cpu.get_cpu_capability()} "
             "(benchmarks/verify_across_cpus.py)", "",
             "Per record and level: values over the tolerance / values compared, and the largest move of a value in "
             "[0, 1]. `bench verify` compares the record-level values and the per-sample means across environments; "
             "the single per-sample values (class predictions left out) are shown for scale. Reruns made once from "
             "scratch on this machine; the verdict column is `bench verify`'s at the commit that wrote this file.", "",
             "| record | made on | metrics | per model | comparisons | per-sample means | per-sample, one by one "
             "| verified |", "|---|---|---|---|---|---|---|---|"]
    for path in args.records:
        m = measure(path, args.work_dir / path.stem, args.stamp)
        cells = [f"{o}/{n}, max {w:.4f}" if n else "-" for o, n, w, _ in (
            m["levels"][k] for k in ("metrics", "per_model", "comparisons", "per-sample means",
                                     "per-sample, one by one"))]
        lines.append(f"| {m['run_id']} | {m['made']} | " + " | ".join(cells) + f" | {'yes' if m['matched'] else 'no'} |")
        print(lines[-1], flush=True)
        worst = {k: v[3] for k, v in m["levels"].items() if v[0]}
        if worst:
            print(f"    largest moves over tolerance at: {worst}", flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
