"""``bench leaderboard build``: a static site (plain HTML, CSS, a little JavaScript) from result records.

Pages:

- ``index.html``: the task list (records, methods, profiles, newest record date) and
  every record with its date.
- ``task-<id>.html``: one section per (profile, dataset, protocol hash) — records of
  different protocols are never ranked together — with a table sortable by any column:
  method, seeds, mean ± std over seeds of every metric (↑/↓ from the record), links to
  each seed's record. Sample grids the runs kept (PNG artefacts) and, for chapter 5
  runs whose per-sample scores carry ITA differences, the bias plots (matplotlib).
- ``tables.html``: the paper tables with the reproduced values of these records.
- ``records/<run_id>.json``: the records themselves, which every row links to.

Artefacts are only read from inside the record's own folder and only when they are
PNG files, so a record cannot make the builder copy files from elsewhere.
"""
from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.leaderboard.assets import SORT_JS, STYLE_CSS

logger = logging.getLogger(__name__)

SITE_MARKER = ".bench-site"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROFILE_ORDER = {"paper": 0, "mini": 1, "smoke": 2}
esc = html.escape


class SiteError(ValueError):
    """The site cannot be built (one line)."""


@dataclass(frozen=True)
class SiteSummary:
    out: Path
    pages: tuple[str, ...]
    n_records: int
    n_images: int


def task_page_name(task: str) -> str:
    """File name of a task's page; characters outside [A-Za-z0-9._-] become '_'."""
    return "task-" + re.sub(r"[^A-Za-z0-9._-]", "_", task) + ".html"


def default_site_dir() -> Path:
    from bench.paths import project_dir

    return project_dir() / "results" / "site"


def page(title: str, body: str, generated: str, n_records: int) -> str:
    """A complete HTML page with the shared header, stylesheet and sort script."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · medsynth-bench</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="style.css">
<script src="sort.js" defer></script>
</head>
<body>
<header><a href="index.html"><strong>medsynth-bench</strong></a><a href="index.html">Tasks</a><a href="tables.html">Paper tables</a></header>
<main>
{body}
<p class="meta">Built {esc(generated)} from {n_records} record(s).</p>
</main>
</body>
</html>
"""


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    digits = 4 if abs(value) < 10 else 2
    text = f"{value:.{digits}f}"
    return text + (f" ±\u00a0{std:.{digits}f}" if std is not None else "")  # a narrow column wraps before the ±


def _arrow(info: dict[str, Any] | None) -> str:
    if not info or info.get("higher_is_better") is None:
        return ""
    return " ↑" if info["higher_is_better"] else " ↓"


def safe_artifact(record: dict[str, Any], rel: str | None) -> Path | None:
    """The artefact file if it is a PNG inside the record's folder, else None."""
    if not rel or "_path" not in record:
        return None
    folder = Path(record["_path"]).resolve().parent
    candidate = (folder / rel).resolve()
    try:
        candidate.relative_to(folder)
    except ValueError:
        logger.warning("record %s: artefact %s is outside its folder; not shown", record["run_id"], rel)
        return None
    if candidate.suffix.lower() != ".png" or not candidate.is_file():
        return None
    with candidate.open("rb") as fh:
        if fh.read(8) != PNG_MAGIC:
            logger.warning("record %s: artefact %s is not a PNG; not shown", record["run_id"], rel)
            return None
    return candidate


def per_sample_csv(record: dict[str, Any]) -> Path | None:
    """The record's per-sample score file if it is a CSV inside the record's folder."""
    rel = record.get("per_sample_file")
    if not rel or "_path" not in record:
        return None
    folder = Path(record["_path"]).resolve().parent
    candidate = (folder / rel).resolve()
    try:
        candidate.relative_to(folder)
    except ValueError:
        return None
    return candidate if candidate.suffix.lower() == ".csv" and candidate.is_file() else None


def bias_plot(csv_path: Path, out_png: Path, thresholds: Sequence[float] = (0.8, 0.6)) -> bool:
    """Chapter 5 bias plot: ITA difference of all test images vs the poorly segmented subsets S_x.

    Reads per-image rows with an ``ita_difference`` column (degrees) and the IoU that
    defines S_x: ``pretrained_iou`` (the lowcontrast task's rows) or else ``iou``; with
    ``split``/``model`` columns there is one panel per split and model, and of several
    ``arm``s only the pretrained one is used. Draws the density of ITA difference for all images and for S_x = {IoU < x}
    (thesis Figs. 5.4/5.8), with the low-contrast threshold 30 marked.

    Returns:
        False (and writes nothing) if the file lacks the two columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path)
    iou_col = "pretrained_iou" if "pretrained_iou" in df.columns else "iou"
    if not {"ita_difference", iou_col} <= set(df.columns):
        return False
    df = df.rename(columns={iou_col: "_subset_iou"})
    if "arm" in df.columns and df["arm"].nunique() > 1:
        # the bias is a property of the pretrained models: take their arm (every arm carries the same pretrained IoU)
        arms = set(df["arm"])
        preferred = next((a for a in ("pretrained", "real-only") if a in arms), sorted(arms)[0])
        df = df[df["arm"] == preferred]
    keys = [k for k in ("split", "model") if k in df.columns]
    groups = [(" · ".join(map(str, k if isinstance(k, tuple) else (k,))), g) for k, g in df.groupby(keys)] if keys \
        else [("all models", df)]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.2), squeeze=False)
    for ax, (name, part) in zip(axes[0], groups):
        bins = 30
        ax.hist(part["ita_difference"].dropna(), bins=bins, density=True, alpha=0.45, label=f"all (n={len(part)})")
        for x in thresholds:
            sub = part[part["_subset_iou"] < x]["ita_difference"].dropna()
            if len(sub):
                ax.hist(sub, bins=bins, density=True, histtype="step", linewidth=1.6, label=f"S_{x} (n={len(sub)})")
        ax.axvline(30, color="k", linestyle=":", linewidth=1)
        ax.set_title(str(name))
        ax.set_xlabel("ITA difference (deg)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return True


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (not (out / SITE_MARKER).exists() and any(out.iterdir()))):
        raise SiteError(f"{out} exists, is not empty and was not built by bench leaderboard build; choose another --out")


def _swap_in(built: Path, out: Path) -> None:
    """Replace ``out`` by the complete build: the previous site is only removed once the new one is in place."""
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    built.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _prepare_out(out: Path) -> None:
    (out / "records").mkdir(parents=True)
    (out / "img").mkdir()
    (out / SITE_MARKER).write_text("built by bench leaderboard build; the folder is replaced on every build\n")
    (out / "style.css").write_text(STYLE_CSS, encoding="utf-8")
    (out / "sort.js").write_text(SORT_JS, encoding="utf-8")


def _sections(records: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, str, str], list[dict[str, Any]]]]:
    """Records by (profile, dataset, protocol): per profile, the task's leaderboard (default) protocol first, where a
    plain ``bench run`` lands, then by dataset, protocol name (a family's members together), and size."""
    from bench.protocols import record_protocol

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["profile"], rec["dataset"]["id"], rec["protocol_hash"])].append(rec)

    def order(item: tuple[tuple[str, str, str], list[dict[str, Any]]]) -> tuple:
        (profile, dataset, proto), group = item
        named = record_protocol(group[0])
        default = bool(named and named.default and not named.values)
        # a family's members (MedDiff-FT's +150 / +275, DiffBoost's folds) sit together, the base first, then by value
        family = (0, named.name, tuple(sorted(named.values.items()))) if named else (1, "", ())
        return PROFILE_ORDER.get(profile, 9), not default, dataset, family, -len(group), proto

    return sorted(groups.items(), key=order)


def verification(record: dict[str, Any]) -> dict[str, Any] | None:
    """The ``bench verify --stamp`` result kept beside the record (``<run_id>.verified.yaml``), if any."""
    import yaml

    if "_path" not in record:
        return None
    path = Path(record["_path"]).with_name(f"{record['run_id']}.verified.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) and data.get("matched") is True else None


def _status_cell(runs: list[dict[str, Any]]) -> str:
    stamps = [verification(r) for r in runs]
    if stamps and all(stamps):
        newest = max(stamps, key=lambda s: str(s.get("date", "")))
        title = (f"rerun by bench verify on {newest.get('date')} ({newest.get('environment', '')}); "
                 f"{'bit for bit' if newest.get('exact') else 'within tolerance'}")
        return f'<td class="text"><span class="verified" title="{esc(title)}">verified</span></td>'
    return '<td class="text"><span class="self-reported" title="not rerun by a maintainer">self-reported</span></td>'


def _leader_table(recs: list[dict[str, Any]]) -> str:
    """One protocol group ranked by the task's headline metric: rank, method and variant, seeds, headline, gain
    over real-only with its 95 % bootstrap CI and paired-test p, the other metrics, verified or self-reported."""
    from bench.leaderboard.ranking import entry_gain
    from bench.registry import TASKS
    from bench.tables.reproduce import mean_std
    from bench.variants import entries as variant_entries

    metrics: list[str] = []
    info: dict[str, Any] = {}
    for rec in recs:
        for key in rec["metrics"]:
            if key not in metrics:
                metrics.append(key)
        info.update(rec.get("metric_info", {}))
    task_id = recs[0]["task"]["id"]
    main = getattr(TASKS.get(task_id), "main_metric", "") if task_id in TASKS else ""
    main = main if main in metrics else metrics[0]
    higher = (info.get(main) or {}).get("higher_is_better", True) is not False
    # one row per method and config variant (DiDGen and its ca_guidance=False ablation are two entries)
    entries = []
    for (method, variant), runs in variant_entries(recs).items():
        values = [r["metrics"][main] for r in runs if isinstance(r["metrics"].get(main), (int, float))]
        entries.append((method, variant, runs, mean_std(values) if values else (None, None)))
    entries.sort(key=lambda e: (e[3][0] is None, -(e[3][0] or 0) if higher else (e[3][0] or 0), e[0], e[1]))
    others = [m for m in metrics if m != main]
    head = ['<th class="short">#</th>', '<th class="text">Method</th>', '<th class="short">Seeds</th>',
            f"<th>{esc(main)}{esc(_arrow(info.get(main)))}</th>",
            '<th title="mean over models of method / real-only - 1; 95 % bootstrap CI over test images">'
            "gain vs real-only [95 % CI]</th>", '<th class="short" title="paired t-test over per-image scores">p</th>']
    head += [f"<th>{esc(m)}{esc(_arrow(info.get(m)))}</th>" for m in others]
    head += ['<th class="text short">Status</th>', '<th class="text short">Records</th>']
    rows = []
    for rank, (method, variant, runs, (mean, std)) in enumerate(entries, 1):
        label = f'<a href="records/{esc(runs[0]["run_id"])}.json">{esc(method)}</a>'
        if variant:
            label += f'<span class="variant">{esc(variant)}</span>'
        cells = [f'<td data-value="{rank}">{rank}</td>', f'<td class="text method">{label}</td>',
                 f'<td data-value="{len(runs)}">{len(runs)}</td>',
                 f'<td class="value" data-value="{mean!r}">{esc(_fmt(mean, std))}</td>' if mean is not None else '<td data-value="">—</td>']
        gain = entry_gain(runs, main, per_sample_csv) if task_id in TASKS else None
        if gain is not None:
            cells.append(f'<td class="value" data-value="{gain.value!r}">{gain.value * 100:+.2f}\u00a0% '
                         f'<span class="ci">[{gain.low * 100:+.2f},\u00a0{gain.high * 100:+.2f}]</span></td>')
            cells.append(f'<td data-value="{gain.p!r}">{gain.p:.2g}</td>' if gain.p is not None else '<td data-value="">—</td>')
        else:
            gains = [recorded_gain(r, main) for r in runs]
            gains = [g for g in gains if isinstance(g, (int, float))]
            cells.append(f'<td data-value="{np.mean(gains)!r}">{np.mean(gains) * 100:+.2f} %</td>' if gains
                         else '<td data-value="">—</td>')
            cells.append('<td data-value="">—</td>')
        for m in others:
            values = [r["metrics"][m] for r in runs if isinstance(r["metrics"].get(m), (int, float))]
            if values:
                m_mean, m_std = mean_std(values)
                cells.append(f'<td class="value" data-value="{m_mean!r}">{esc(_fmt(m_mean, m_std))}</td>')
            else:
                cells.append('<td data-value="">—</td>')
        links = " ".join(f'<a href="records/{esc(r["run_id"])}.json">s{r["seed"]}</a>' for r in runs)
        cells += [_status_cell(runs), f'<td class="text">{links}</td>']
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="sortable leaderboard"><thead><tr>' + "".join(head) + "</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table></div>")


def recorded_gain(record: dict[str, Any], metric: str) -> float | None:
    """The record's relative gain on ``metric`` (mean over models of method / real-only - 1); for a metric outside its
    ``relative_gain`` (derm-cls states it for the weighted metrics only), rebuilt from the per-model values of both
    arms."""
    comparisons = record.get("comparisons") or {}
    gain = (comparisons.get("relative_gain") or {}).get(metric)
    if isinstance(gain, (int, float)):
        return float(gain)
    if comparisons.get("reference") in (None, (record.get("method") or {}).get("id")):
        return None  # the reference arm itself: no gain to state
    mine, ref = record.get("per_model") or {}, comparisons.get("reference_per_model") or {}
    pairs = {m: (v.get(metric), (ref.get(m) or {}).get(metric)) for m, v in mine.items()}
    if not pairs or not all(isinstance(a, (int, float)) and isinstance(b, (int, float)) for a, b in pairs.values()):
        return None
    from bench.metrics.stats import relative_gain_or_none

    return relative_gain_or_none({m: a for m, (a, _) in pairs.items()}, {m: b for m, (_, b) in pairs.items()})


def _gallery(recs: list[dict[str, Any]], out: Path) -> tuple[str, int]:
    figures = []
    for rec in sorted(recs, key=lambda r: (r["method"]["id"], r["seed"])):
        for name, rel in sorted((rec.get("artifacts") or {}).items()):
            src = safe_artifact(rec, rel)
            if src is None:
                continue
            target = out / "img" / f"{rec['run_id']}.{re.sub(r'[^A-Za-z0-9_-]', '_', str(name))[:60]}.png"
            shutil.copyfile(src, target)
            figures.append(f'<figure><img src="img/{esc(target.name)}" alt="{esc(name)} of {esc(rec["run_id"])}">'
                           f'<figcaption>{esc(rec["method"]["id"])} · seed {rec["seed"]} · {esc(name)}</figcaption></figure>')
        csv_path = per_sample_csv(rec)
        if csv_path is not None and rec["task"]["id"] == "lowcontrast":
            target = out / "img" / f"{rec['run_id']}.bias.png"
            try:
                made = bias_plot(csv_path, target)
            except (ValueError, KeyError, OSError) as exc:
                logger.warning("record %s: bias plot failed: %s", rec["run_id"], exc)
                made = False
            if made:
                figures.append(f'<figure><img src="img/{esc(target.name)}" alt="bias plot of {esc(rec["run_id"])}">'
                               f'<figcaption>{esc(rec["method"]["id"])} · seed {rec["seed"]} · ITA difference: all vs S_0.8, S_0.6'
                               "</figcaption></figure>")
    if not figures:
        return "", 0
    return '<div class="gallery">' + "\n".join(figures) + "</div>", len(figures)


def paper_tables_of(task: str, paper_dir: Path | None = None) -> list[str]:
    """Ids of the paper tables with a cell read from this task's records (in any profile)."""
    from bench.tables.paper import TableError, for_profile, load_all

    try:
        tables = load_all(paper_dir)
    except TableError:
        return []
    return [t.id for t in tables if any(for_profile(t.raw_query(r.key, c.key).get("task"), p) == task
                                        for r in t.rows for c in t.columns for p in ("mini", "paper"))]


def _task_page(task: str, recs: list[dict[str, Any]], out: Path) -> tuple[str, int]:
    from bench.tables.dynamic_range import section_html

    parts = [f"<h1>Task <code>{esc(task)}</code></h1>",
             '<p class="meta">Each section holds records of one profile, dataset and protocol hash; records of different '
             "protocols are never ranked together. Values are mean ± sample std over seeds; click a column header to sort.</p>"]
    tables = paper_tables_of(task)
    if tables:
        links = ", ".join(f'<a href="tables.html#{esc(t)}">{esc(t)}</a>' for t in tables)
        parts.append(f'<p class="meta">Reported vs reproduced: {links} (the papers\' numbers beside these records).</p>')
    n_images = 0
    for (profile, dataset, proto), group in _sections(recs):
        parts.append(_section_heading(profile, dataset, proto, group[0]))
        parts.append(section_html(group))  # world-oracle - noise, when both controls ran (issue 23)
        parts.append(_leader_table(group))
        gallery, n = _gallery(group, out)
        if gallery:
            parts += ["<h3>Samples and plots kept by the runs</h3>", gallery]
            n_images += n
    return "\n".join(parts), n_images


def _section_heading(profile: str, dataset: str, proto: str, record: dict[str, Any]) -> str:
    """``Protocol seg-aug/mini@v1 — S_1k twin, 4 segmenters`` with the hash beside (a hash alone when the records
    ran no named protocol, bench/protocols.yaml), then profile and dataset."""
    from bench.protocols import record_protocol

    named = record_protocol(record)
    code = f'<code title="{esc(proto)}">{esc(proto[:12])}</code>'
    title = (f"Protocol <code>{esc(named.display_name)}</code> — {esc(named.title)} ({code})" if named
             else f"Protocol {code} (no named protocol)")
    about = f'<p class="meta">{esc(named.about)}</p>' if named and named.about else ""
    return (f'<h2 id="{esc(profile)}-{esc(dataset)}-{esc(proto[:12])}">{title} · profile <code>{esc(profile)}</code> · '
            f"dataset <code>{esc(dataset)}</code></h2>" + about)


def _protocol_cell(record: dict[str, Any]) -> str:
    """The record's protocol name (bench/protocols.yaml) with the hash beside, or the hash alone."""
    from bench.protocols import record_protocol

    named = record_protocol(record)
    code = f'<code title="{esc(record["protocol_hash"])}">{esc(record["protocol_hash"][:8])}</code>'
    return f"<code>{esc(named.display_name)}</code> ({code})" if named else code


def _index_page(by_task: dict[str, list[dict[str, Any]]], records: list[dict[str, Any]]) -> str:
    rows = []
    for task, recs in sorted(by_task.items()):
        methods = sorted({r["method"]["id"] for r in recs})
        profiles = sorted({r["profile"] for r in recs}, key=lambda p: PROFILE_ORDER.get(p, 9))
        newest = max(r["created"] for r in recs)
        rows.append(f'<tr><td class="text"><a href="{esc(task_page_name(task))}">{esc(task)}</a></td>'
                    f'<td data-value="{len(recs)}">{len(recs)}</td><td class="text">{esc(", ".join(methods))}</td>'
                    f'<td class="text">{esc(", ".join(profiles))}</td><td class="text">{esc(newest)}</td></tr>')
    tasks = ('<table class="sortable" id="tasks"><thead><tr><th class="text">Task</th><th>Records</th><th class="text">Methods</th>'
             '<th class="text">Profiles</th><th class="text">Newest record</th></tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>")
    rec_rows = []
    for rec in sorted(records, key=lambda r: r["created"], reverse=True):
        rec_rows.append(f'<tr><td class="text">{esc(rec["created"])}</td><td class="text"><a href="{esc(task_page_name(rec["task"]["id"]))}">'
                        f'{esc(rec["task"]["id"])}</a></td><td class="text">{esc(rec["method"]["id"])}</td>'
                        f'<td class="text">{esc(rec["dataset"]["id"])}</td><td class="text">{esc(rec["profile"])}</td>'
                        f'<td data-value="{rec["seed"]}">{rec["seed"]}</td><td class="text">{_protocol_cell(rec)}</td>'
                        f'<td class="text"><a href="records/{esc(rec["run_id"])}.json">{esc(rec["run_id"])}</a></td></tr>')
    listing = ('<table class="sortable" id="records"><thead><tr><th class="text">Date (UTC)</th><th class="text">Task</th>'
               '<th class="text">Method</th><th class="text">Dataset</th><th class="text">Profile</th><th>Seed</th>'
               '<th class="text">Protocol</th><th class="text">Record</th></tr></thead><tbody>\n' + "\n".join(rec_rows) + "\n</tbody></table>")
    empty = "" if records else "<p>No records yet: run <code>bench run</code>, then <code>bench submit</code> the record.</p>"
    return ("<h1>medsynth-bench leaderboard</h1>\n<p>Controllable diffusion synthesis in medical imaging: every task, every "
            "accepted run. Profiles: <code>paper</code> (real data and weights), <code>mini</code> (the embedded CPU track).</p>\n"
            + empty + "<h2>Tasks</h2>\n" + tasks + "\n<h2>Records</h2>\n" + listing)


def _tables_page(records: list[dict[str, Any]], paper_dir: Path | None) -> str:
    from bench.tables.contributed import contributed_methods, with_methods
    from bench.tables.paper import load_all
    from bench.tables.render import html_fragment
    from bench.tables.reproduce import reproduce_table

    parts = ["<h1>Paper tables</h1>", '<p class="meta">Reported values next to the values reproduced by the records on this '
             "site, per profile. Accepted entries of other methods are extra columns (or rows) marked contributed, "
             "filled only from records of the protocol of the paper cells beside them (<code>bench table ID --with "
             "METHOD</code> renders the same). Tables without any reproduced cell are listed at the end.</p>"]
    empty = []
    for table in load_all(paper_dir):
        shown = False
        for profile in ("paper", "mini"):
            result = reproduce_table(table, profile, records)
            if result.n_reproduced:
                accepted = contributed_methods(result, records)  # entries beside the paper's methods, as --with
                if accepted:
                    result = with_methods(result, accepted, records)
                parts.append('<div class="scroll">' + html_fragment(result, record_href=lambda run_id: f"records/{run_id}.json") + "</div>")
                shown = True
        if not shown:
            empty.append(f"<li><code>{esc(table.id)}</code>: {esc(table.caption)} ({esc(table.title)})</li>")
    if empty:
        parts += ["<h2>No reproduced cells yet</h2>", "<ul>" + "".join(empty) + "</ul>"]
    return "\n".join(parts)


def build_site(record_dirs: Sequence[Path], out: Path | None = None, paper_dir: Path | None = None,
               generated: str | None = None) -> SiteSummary:
    """Write the static site for every valid record under ``record_dirs`` into ``out``.

    Args:
        record_dirs: folders of records (default of the CLI: ``results/leaderboard``).
        out: output folder (``results/site``); replaced if it holds a previous build,
            refused if it holds anything else.
        paper_dir: folder of the paper tables (default ``results/paper``).
        generated: build time shown on the pages (default: now, UTC).
    """
    from bench.store import utc_now
    from bench.tables.reproduce import load_records

    final = Path(out) if out else default_site_dir()
    generated = generated or utc_now()
    _check_out(final)
    records = load_records(record_dirs)
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        summary = _build(records, out, paper_dir, generated)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    _swap_in(out, final)
    logger.info("site: %d page(s), %d record(s), %d image(s) in %s", len(summary.pages), summary.n_records,
                summary.n_images, final)
    return dataclasses.replace(summary, out=final)


def _build(records: Sequence[dict[str, Any]], out: Path, paper_dir: Path | None, generated: str) -> SiteSummary:
    _prepare_out(out)
    for rec in records:
        clean = {k: v for k, v in rec.items() if not k.startswith("_")}
        (out / "records" / f"{rec['run_id']}.json").write_text(json.dumps(clean, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]["id"]].append(rec)
    pages = {"index.html": ("Leaderboard", _index_page(by_task, records))}
    n_images = 0
    for task, recs in by_task.items():
        body, n = _task_page(task, recs, out)
        n_images += n
        pages[task_page_name(task)] = (f"Task {task}", body)
    pages["tables.html"] = ("Paper tables", _tables_page(records, paper_dir))
    for name, (title, body) in pages.items():
        (out / name).write_text(page(title, body, generated, len(records)), encoding="utf-8")
    return SiteSummary(out=out, pages=tuple(sorted(pages)), n_records=len(records), n_images=n_images)
