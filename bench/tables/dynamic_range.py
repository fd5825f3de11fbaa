"""A task's dynamic range: the positive control minus the negative control on its headline metric (issue 23).

``world-oracle`` (fresh samples from the procedural world's own generator: perfect synthetic data) and ``noise``
(images carrying no information about the task) are run like any method. Under one protocol (task, profile,
protocol hash) their headline values, averaged over seeds, bound what a generator can do there:

    range = world-oracle - noise

and a method's gain over real-only is read against it, ``(method - real-only) / range``: 0 % is no better than
real data alone, 100 % is as good as perfect synthetic data added to it. The sign convention holds for metrics where
lower is better too (both differences change sign). Used by ``bench table`` (a footer under the paper table) and by
the leaderboard site (a line above each protocol's ranking and a column).
"""
from __future__ import annotations

import html
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.variants import entries, newest_per_seed

POSITIVE, NEGATIVE = "world-oracle", "noise"
CONTROLS = (POSITIVE, NEGATIVE)


@dataclass(frozen=True)
class DynamicRange:
    """The controls of one protocol. Values are means over seeds (the newest record per seed)."""

    task: str
    profile: str
    protocol: str
    metric: str
    oracle: float
    noise: float
    oracle_seeds: int
    noise_seeds: int
    real_only: float | None
    """The real-only arm's value under this protocol (the controls' reference arm), when the records hold it."""

    @property
    def span(self) -> float:
        return self.oracle - self.noise

    def fraction(self, value: float | None, reference: float | None = None) -> float | None:
        """``(value - reference) / span``: a gain over ``reference`` (default: real-only) as a share of the range;
        None when a value is missing or the range is 0."""
        reference = self.real_only if reference is None else reference
        if value is None or reference is None or self.span == 0:
            return None
        return (value - reference) / self.span

    def where_real_only_sits(self) -> str:
        """Where the real-only arm sits in the range, and a warning when it is below the negative control (then
        training on images that carry no information beats it, and a gain over it is partly that); '' without it."""
        if self.real_only is None:
            return ""
        if not self.span:
            return f"real-only {self.real_only:.4f}"
        share = (self.real_only - self.noise) / self.span
        text = f"real-only {self.real_only:.4f} sits at {share * 100:.0f} % of it"
        if share < 0:
            text += (", below the negative control: training on images that carry no information already beats it, "
                     "so a gain over real-only here is partly that; read a method against noise")
        return text

    def describe(self) -> str:
        real = f"; {self.where_real_only_sits()}" if self.real_only is not None else ""
        return (f"{self.task} ({self.profile}, protocol {self.protocol[:12]}), {self.metric}: world-oracle "
                f"{self.oracle:.4f} ({self.oracle_seeds} seed{'s' * (self.oracle_seeds != 1)}) - noise {self.noise:.4f} "
                f"({self.noise_seeds} seed{'s' * (self.noise_seeds != 1)}) = {self.span:+.4f}{real}")


def headline_metric(task_id: str, records: Sequence[dict[str, Any]], preferred: Sequence[str] = ()) -> str | None:
    """The task's ``main_metric`` (the leaderboard's ranking metric) when the records hold it; else the first of
    ``preferred`` (a paper table's metrics, unbracketed first) that they hold; else their first metric. cxr's
    image protocol has no CE F1, and Table 6.2 reads AUROC, not the FD that comes first in its records."""
    from bench.registry import TASKS

    main = getattr(TASKS.get(task_id), "main_metric", "") if task_id in TASKS else ""
    keys = [k for r in records for k in r.get("metrics", {})]
    if main in keys:
        return main
    ordered = sorted(preferred, key=lambda m: "[" in m)  # stable: the table's order, unbracketed first
    return next((m for m in ordered if m in keys), keys[0] if keys else None)


def _value(rec: dict[str, Any], metric: str) -> float | None:
    v = rec.get("metrics", {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def _reference(rec: dict[str, Any], metric: str) -> float | None:
    v = ((rec.get("comparisons") or {}).get("reference_metrics") or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def dynamic_ranges(records: Sequence[dict[str, Any]], preferred: Sequence[str] = ()
                   ) -> dict[tuple[str, str, str], DynamicRange]:
    """Every protocol (task id, profile, protocol hash) with records of both controls, and its range (on the
    task's headline metric, or on the first of ``preferred`` its controls hold: `headline_metric`)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["task"]["id"], rec["profile"], rec["protocol_hash"])].append(rec)
    out = {}
    for key, recs in groups.items():
        pos = newest_per_seed([r for r in recs if r["method"]["id"] == POSITIVE])
        neg = newest_per_seed([r for r in recs if r["method"]["id"] == NEGATIVE])
        if not pos or not neg:
            continue
        metric = headline_metric(key[0], pos + neg, preferred)
        if metric is None:
            continue
        pv = [v for v in (_value(r, metric) for r in pos) if v is not None]
        nv = [v for v in (_value(r, metric) for r in neg) if v is not None]
        if not pv or not nv:
            continue
        real = [v for v in (_reference(r, metric) for r in pos + neg) if v is not None]
        if not real:  # controls without a reference arm: the real-only records of the protocol
            real_recs = newest_per_seed([r for r in recs if r["method"]["id"] == "real-only"])
            real = [v for v in (_value(r, metric) for r in real_recs) if v is not None]
        out[key] = DynamicRange(task=key[0], profile=key[1], protocol=key[2], metric=metric,
                                oracle=statistics.fmean(pv), noise=statistics.fmean(nv), oracle_seeds=len(pv),
                                noise_seeds=len(nv), real_only=statistics.fmean(real) if real else None)
    return out


def _by_variant(rng: DynamicRange, records: Sequence[dict[str, Any]]
                ) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    """The leaderboard entries (`bench.variants.entries`: method and config variant, newest record per seed) of
    ``rng``'s protocol, as ((method id, display label), records). The label is the method id, with the variant in
    parentheses when the method has more than one entry under this protocol."""
    mine = entries([r for r in records
                    if (r["task"]["id"], r["profile"], r["protocol_hash"]) == (rng.task, rng.profile, rng.protocol)])
    per_method = defaultdict(int)
    for method, _ in mine:
        per_method[method] += 1
    return sorted(((method, f"{method} ({variant})" if variant and per_method[method] > 1 else method), recs)
                  for (method, variant), recs in mine.items())


@dataclass(frozen=True)
class MethodGain:
    """A method's gain over real-only under one protocol, over its seeds (each seed paired with its own real-only
    arm). ``ci`` and ``p`` (the paired t-test across seeds: method vs real-only, two-sided) need two or more seeds."""

    method: str
    gain: float
    share: float
    seeds: int
    ci: tuple[float, float] | None = None
    p: float | None = None

    def describe(self) -> str:
        text = f"{self.gain:+.4f} over real-only = {self.share * 100:+.1f} % of the range ({self.seeds} seed{'s' * (self.seeds != 1)}"
        if self.ci is not None and self.p is not None:
            text += f"; 95% CI [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}], paired t-test across seeds p {self.p:.2g}"
        return text + ")"


def method_fractions(rng: DynamicRange, records: Sequence[dict[str, Any]]) -> list[MethodGain]:
    """Per method under ``rng``'s protocol: its mean gain over real-only in metric units, that gain as a share of the
    range, and across two or more seeds a t interval and the paired t-test. The gain pairs each record with its own
    real-only arm (``reference_metrics``)."""
    from bench.metrics.stats import paired_ttest, t_interval

    out = []
    for (method, label), recs in _by_variant(rng, records):
        if method == "real-only":
            continue
        pairs = []
        for rec in recs:
            value, ref = _value(rec, rng.metric), _reference(rec, rng.metric)
            if value is not None and ref is not None:
                pairs.append((value, ref))
        if pairs and rng.span:
            gains = [v - r for v, r in pairs]
            gain = statistics.fmean(gains)
            ci = p = None
            if len(pairs) >= 2:
                ci = t_interval(gains)
                p = paired_ttest([v for v, _ in pairs], [r for _, r in pairs])["p"]
            out.append(MethodGain(label, gain, gain / rng.span, len(gains), ci, p))
    return out


@dataclass(frozen=True)
class MethodPosition:
    """Where a method sits in the range when its records have no real-only arm to be paired with (derm-quality's
    FD, MS-SSIM and LPIPS score a generated set, not an augmented training run): ``(value - noise) / span``, 0 % at
    the negative control and 100 % at the positive one (for lower-is-better metrics too), mean over its seeds."""

    method: str
    value: float
    share: float
    seeds: int

    def describe(self, metric: str) -> str:
        return (f"{metric} {self.value:.4f} = {self.share * 100:.0f} % of the way from noise to world-oracle "
                f"({self.seeds} seed{'s' * (self.seeds != 1)}; no real-only arm to pair with)")


def method_positions(rng: DynamicRange, records: Sequence[dict[str, Any]]) -> list[MethodPosition]:
    """Per method under ``rng``'s protocol whose records hold the metric but no real-only reference for it (so
    `method_fractions` has no gain to give): its mean value over seeds and its position in the range. Real-only
    and the controls are left out (the range's own ends and reference)."""
    out = []
    for (method, label), recs in _by_variant(rng, records):
        if method == "real-only" or method in CONTROLS or not rng.span:
            continue
        if any(_reference(r, rng.metric) is not None for r in recs):
            continue  # paired with real-only: method_fractions reads it
        values = [v for v in (_value(r, rng.metric) for r in recs) if v is not None]
        if values:
            value = statistics.fmean(values)
            out.append(MethodPosition(label, value, (value - rng.noise) / rng.span, len(values)))
    return out


def table_protocols(result: Any) -> set[tuple[str, str, str]]:
    """(task, profile, protocol hash) of the records a filled paper table read, and (task, profile, "") for a task
    none of whose cells has a record yet (its controls under any protocol are then shown). A table that read some
    records of a task shows only their protocols: a report table beside an image protocol's range would mislead."""
    out, empty = set(), set()
    for cell in result.cells.values():
        if cell.query is None:
            continue
        if cell.records:
            out |= {(r["task"]["id"], r["profile"], r["protocol_hash"]) for r in cell.records}
        else:
            empty.add((cell.query.task, result.profile, ""))
    filled = {(t, p) for t, p, _ in out}
    return out | {e for e in empty if (e[0], e[1]) not in filled}


def footer_lines(result: Any, records: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-text lines: the dynamic range of each protocol the table read, then each method's gain against it."""
    metrics = list(dict.fromkeys(c.query.metric for c in result.cells.values() if c.query is not None))
    ranges = dynamic_ranges(records, metrics)
    wanted = table_protocols(result)
    tasks_without_protocol = {(t, p) for t, p, h in wanted if not h}
    shown = [r for k, r in sorted(ranges.items()) if k in wanted or (k[0], k[1]) in tasks_without_protocol]
    if not shown:
        tasks = sorted({t for t, _, _ in wanted})
        return [f"Dynamic range: no world-oracle and noise records under this table's protocols ({', '.join(tasks)}; "
                f"bench run --method world-oracle / --method noise)."] if tasks else []
    lines = ["Dynamic range (world-oracle - noise on the task's headline metric, else the table's first metric the "
             "controls report; a gain over real-only as a share of it):"]
    for rng in shown:
        lines.append(f"- {rng.describe()}")
        gains = method_fractions(rng, records)
        for g in sorted(gains, key=lambda g: g.method in CONTROLS):  # the controls last: the range's own check
            lines.append(f"  - {g.method}{' (control)' if g.method in CONTROLS else ''}: {g.describe()}")
        for pos in sorted(method_positions(rng, records), key=lambda p: -p.share):
            lines.append(f"  - {pos.method}: {pos.describe(rng.metric)}")
    return lines


def with_footer(text: str, result: Any, records: Sequence[dict[str, Any]], fmt: str) -> str:
    """``text`` (a rendered table) with the dynamic-range footer: markdown lines after it, an HTML paragraph
    before ``</body>``; csv and latex unchanged (kept parseable)."""
    lines = footer_lines(result, records)
    if not lines or fmt in ("csv", "latex"):
        return text
    if fmt == "html":
        block = "<p class=\"dynamic-range\">" + "<br>\n".join(html.escape(line) for line in lines) + "</p>\n"
        return text.replace("</body>", block + "</body>", 1) if "</body>" in text else text + block
    return text + "\n" + "\n".join(lines) + "\n"


def section_html(records: Sequence[dict[str, Any]]) -> str:
    """For a leaderboard section (the records of one protocol): a paragraph with the dynamic range and each
    method's gain over real-only as a share of it; a one-line hint when the controls have not run there."""
    ranges = list(dynamic_ranges(records).values())
    if not ranges:
        if any(r["method"]["id"] in CONTROLS for r in records):
            missing = [c for c in CONTROLS if not any(r["method"]["id"] == c for r in records)]
            return f'<p class="meta dynamic-range">Dynamic range: needs a {html.escape(" and ".join(missing))} record here.</p>'
        return ""
    rng = ranges[0]
    shares = [f"{html.escape(g.method)} {g.share * 100:+.1f} %" + (f" (p {g.p:.2g} over {g.seeds} seeds)" if g.p is not None else "")
              for g in method_fractions(rng, records) if g.method not in CONTROLS]
    text = (f"<strong>Dynamic range</strong> ({html.escape(rng.metric)}, world-oracle − noise): "
            f"{rng.oracle:.4f} − {rng.noise:.4f} = <strong>{rng.span:+.4f}</strong> "
            f"({rng.oracle_seeds} / {rng.noise_seeds} seeds)")
    if rng.real_only is not None and rng.span:
        text += f"; {html.escape(rng.where_real_only_sits())}"
    if shares:
        text += ". Gain over real-only as a share of the range: " + ", ".join(shares)
    positions = [f"{html.escape(p.method)} {p.share * 100:.0f} %"
                 for p in sorted(method_positions(rng, records), key=lambda p: -p.share)]
    if positions:
        text += ". Position between noise (0 %) and world-oracle (100 %): " + ", ".join(positions)
    return f'<p class="meta dynamic-range" title="(method - real-only) / (world-oracle - noise)">{text}.</p>'
