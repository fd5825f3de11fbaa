"""The controls against real-only on derm-mini (issue 23): a markdown table of control records and their ranges.

Reads the records of ``world-oracle``, ``noise`` (and ``real-only``) in the given folders and writes, per task and
protocol, each run's headline metrics, its gain over its own real-only arm and the paired test's p, then the dynamic
range (``bench.tables.dynamic_range``). The records themselves are copied beside the table (``--copy-to``).

    python benchmarks/derm_mini_controls.py runs/calib/records runs/cls/records \\
        --out benchmarks/derm_mini_controls.md --copy-to benchmarks/derm_mini_controls
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main() -> None:
    from bench.tables.dynamic_range import CONTROLS, dynamic_ranges, headline_metric

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copy-to", type=Path, default=None)
    args = parser.parse_args()

    records = []
    for folder in args.folders:
        for path in sorted(folder.glob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("method", {}).get("id") in CONTROLS:
                rec["_path"] = str(path)
                records.append(rec)
    ranges = dynamic_ranges(records)
    lines = ["# Controls on derm-mini (benchmarks/derm_mini_controls.py)", "",
             "Each control run trains the downstream models on real + control data and compares them with its own "
             "real-only arm (same initialisation; paired t-test over test images, pooled over models). Records: "
             "`benchmarks/derm_mini_controls/` (clean commits, one thread each). p: seg-aug per image pooled over "
             "segmenters; derm-cls f1_weighted per classifier (n = 4), accuracy per image pooled over classifiers.", ""]
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        groups.setdefault((rec["task"]["id"], rec["protocol_hash"]), []).append(rec)
    for (task, proto), recs in sorted(groups.items()):
        recs.sort(key=lambda r: (r["method"]["id"], r["seed"]))
        metric = headline_metric(task, recs)
        keys = [metric] + [k for k in ("iou", "accuracy", "balanced_accuracy") if k in recs[0]["metrics"] and k != metric]
        opts = recs[0]["config"]["task"].get("dataset_options", {})
        models = recs[0]["config"]["task"].get("segmenters") or recs[0]["config"]["task"].get("classifiers")
        lines += [f"## {task}, protocol {proto[:12]}", "",
                  f"dataset options {json.dumps(opts)}; models {models}; n_real {recs[0]['config']['task'].get('n_real')}", "",
                  "| method | seed | " + " | ".join(f"{k} (real-only → method, gain, p)" for k in keys) + " | git |",
                  "|---|---|" + "---|" * len(keys) + "---|"]
        for rec in recs:
            c = rec.get("comparisons", {})
            cells = []
            for k in keys:
                ref, val = c.get("reference_metrics", {}).get(k), rec["metrics"].get(k)
                p = (c.get("paired_ttest", {}).get(k) or {}).get("p")
                gain = (c.get("relative_gain") or {}).get(k)
                text = f"{ref:.4f} → {val:.4f}" if None not in (ref, val) else "—"
                if ref and val is not None:
                    text += f", {(gain if gain is not None else val / ref - 1) * 100:+.2f} %"
                cells.append(text + (f", p {p:.2g}" if p is not None else ""))
            lines.append(f"| {rec['method']['id']} | {rec['seed']} | " + " | ".join(cells) +
                         f" | {rec['environment'].get('git_commit', '')[:12]} |")
        rng = ranges.get((task, recs[0]["profile"], proto))
        if rng:
            lines += ["", f"Dynamic range: {rng.describe()}."]
        lines.append("")
    args.out.write_text("\n".join(lines))
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for rec in records:
            src = Path(rec["_path"])
            for f in (src, src.with_suffix(".scores.csv")):
                if f.exists():
                    shutil.copyfile(f, args.copy_to / f.name)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
