"""Renderers of a reproduced paper table: Markdown, CSV, LaTeX and HTML.

Every format shows, per cell, the reported value (as printed), the reproduced value
(mean ± std over seeds, with the number of seeds) and the difference
``reproduced - reported``; cells with no matching run read ``no run`` and cells that
do not apply to the profile read ``n/a``. Markdown, LaTeX and HTML add the derived
claims and the notes under the table; CSV is one line per cell (long format).
"""
from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from typing import Any

from bench.tables.claims import ClaimResult, evaluate_claims
from bench.tables.reproduce import CellResult, TableResult

FORMATS = ("md", "csv", "latex", "html")
DEFAULT_DECIMALS = 3
LEGEND = ("Reproduced: mean ± sample std over seeds (n = seeds); Δ = reproduced − reported; "
          "'no run': no matching record; 'n/a': the cell has no query for this profile; "
          "†: records of other protocols exist and were not averaged in.")


def _decimals(cell: CellResult) -> int:
    return cell.reported.decimals if cell.reported is not None else DEFAULT_DECIMALS


def fmt_reported(cell: CellResult) -> str:
    if cell.reported is None:
        return "—"
    rep = cell.reported
    return f"{rep.printed} ± {rep.std_printed}" if rep.std_printed else rep.printed


def fmt_reproduced(cell: CellResult, pm: str = "±") -> str:
    if cell.status == "n/a":
        return "n/a"
    if cell.status == "no-run" or cell.mean is None:
        return "no run"
    d = _decimals(cell)
    text = f"{cell.mean:.{d}f}"
    if cell.std is not None:
        text += f" {pm} {cell.std:.{d}f}"
    text += f" (n={cell.n_seeds})"
    return text + (" †" if "other protocol" in cell.note else "")  # the legend: records of other protocols


def fmt_delta(cell: CellResult) -> str:
    if cell.delta is None:
        return ""
    return f"{cell.delta:+.{_decimals(cell)}f}"


def fmt_claim_value(value: float | None, claim: ClaimResult) -> str:
    if value is None:
        return "—"
    if claim.kind == "paired_ttest_p":
        return f"{value:.2e}"
    return f"{value * 100:+.2f}%" if claim.percent else f"{value:+.2f}"


def header_line(result: TableResult) -> str:
    t = result.table
    extra = {a.key for a in (*t.columns, *t.rows) if _contributed(a)}  # --with entries: not the paper's cells
    paper = [c for (row, col), c in result.cells.items() if row not in extra and col not in extra]
    total, reproduced = len(paper), sum(1 for c in paper if c.status == "ok")
    line = (f"Source: {t.title} · profile: {result.profile} · {reproduced} of {total} cells reproduced "
            f"from {result.n_records} record(s) of this profile")
    if result.profile != "paper":
        line += (f" · the {result.profile} profile runs on the embedded mini world with small models, so Δ measures "
                 "the distance to the paper's setting, not a reproduction error")
    return line


def _cell_proxy(result: TableResult, row: str, col: str) -> str | None:
    """The metric a reproduced cell reads in this profile where the paper profile reads another (``fd[mini-clip]``
    for FID, ``ms_ssim[win=3]``...), else None."""
    t = result.table
    query, paper = t.cell_query(row, col, result.profile), t.cell_query(row, col, "paper")
    return query.metric if query is not None and (paper is None or query.metric != paper.metric) else None


def proxy_metrics(result: TableResult, col: str) -> list[str]:
    """Metric keys a column's reproduced cells read as proxies: the column measures a proxy, and its header says so."""
    return sorted({m for r in result.table.rows if (m := _cell_proxy(result, r.key, col)) is not None})


def row_proxies(result: TableResult) -> dict[str, str]:
    """Row key -> its proxy metric, for tables whose proxies change along the rows (Table 3.1: CLIP-I, CLIP-T, DINO
    ... per row; Table 4.7: only the mask-diversity row): when every column reads one proxy in a row, the row label
    names it. Empty when each column reads one proxy in all its rows (or none), which its header then names, and
    when proxies vary along the rows and the columns alike (the headers list them)."""
    t = result.table
    grid = {(r.key, c.key): _cell_proxy(result, r.key, c.key) for r in t.rows for c in t.columns}
    if all(len({grid[r.key, c.key] for r in t.rows}) == 1 for c in t.columns):
        return {}
    out = {}
    for r in t.rows:
        found = {grid[r.key, c.key] for c in t.columns}
        if len(found) != 1:
            return {}
        metric = found.pop()
        if metric is not None:
            out[r.key] = metric
    return out


def reproduced_label(result: TableResult, col: str) -> str:
    if row_proxies(result):
        return "reproduced"
    proxies = proxy_metrics(result, col)
    return f"reproduced as {', '.join(proxies)}" if proxies else "reproduced"


def row_label(result: TableResult, row: Any) -> str:
    proxy = row_proxies(result).get(row.key)
    return row.label + (f" (reproduced as {proxy})" if proxy else "")


def _contributed(axis: Any) -> bool:
    return bool(axis.extra.get("contributed"))


def _grid(result: TableResult, pm: str = "±") -> tuple[list[str], list[list[str]]]:
    """Header and body: per paper column reported | reproduced | Δ; per contributed column (``--with``) only its
    values (no paper number to compare)."""
    t = result.table
    head = ["Row"]
    for c in t.columns:
        if _contributed(c):
            head.append(f"{c.label} (contributed) {reproduced_label(result, c.key).removeprefix('reproduced')}".strip())
            continue
        head += [f"{c.label} reported", f"{c.label} {reproduced_label(result, c.key)}", f"{c.label} Δ"]
    body = []
    for r in t.rows:
        line = [row_label(result, r) + (" (contributed)" if _contributed(r) else "")]
        for c in t.columns:
            cell = result.cell(r.key, c.key)
            line += [fmt_reproduced(cell, pm)] if _contributed(c) else [fmt_reported(cell), fmt_reproduced(cell, pm),
                                                                         fmt_delta(cell)]
        body.append(line)
    return head, body


def contributed_summary(result: TableResult) -> list[str]:
    """One sentence per contributed method (``--with``): how many of its cells were filled, and from which
    protocols; empty for a table without contributed entries."""
    t = result.table
    out = []
    for axis in (*t.columns, *t.rows):
        if not _contributed(axis):
            continue
        cells = [c for (row, col), c in result.cells.items() if axis.key in (row, col)]
        ok = [c for c in cells if c.status == "ok"]
        protocols = sorted({c.protocol[:8] for c in ok if c.protocol})
        uncompared = sum(1 for c in ok if c.note.startswith("no paper cell"))
        elsewhere = [c.note for c in cells if c.status == "no-run" and c.note.startswith("records of")]
        text = (f"{axis.label} (contributed): {len(ok)} of {len(cells)} cells from its records"
                + (f" of protocol {', '.join(protocols)}, the paper cells' beside them" if protocols else ""))
        if uncompared:
            text += f"; {uncompared} beside no reproduced paper cell (protocol not compared)"
        if elsewhere:
            text += f"; {len(elsewhere)} empty: {elsewhere[0]}"
        out.append(text + ".")
    return out


def _claim_rows(result: TableResult) -> list[tuple[ClaimResult, list[str]]]:
    rows = []
    for claim in evaluate_claims(result):
        stated = (claim.stated_printed or "—") + ("" if claim.stated_matches_table else " (≠ table)")
        detail = "; ".join(x for x in (claim.detail, claim.note, claim.source and f"stated in: {claim.source}") if x)
        reproduced = fmt_claim_value(claim.from_reproduced, claim)
        if claim.effect is not None and claim.from_reproduced is not None:
            reproduced += f" (gain {claim.effect * 100:+.2f}%)"
        if claim.ci is not None:
            low, high = (fmt_claim_value(v, claim) for v in claim.ci)
            reproduced += f" [95% CI {low}, {high}; {len(claim.seeds)} seeds]"
            per_seed = ", ".join(f"s{s} {fmt_claim_value(v, claim)}" for s, v in zip(claim.seeds, claim.per_seed))
            detail = "; ".join(x for x in (f"per seed: {per_seed}", detail) if x)
        rows.append((claim, [claim.text, stated, fmt_claim_value(claim.from_reported, claim), reproduced,
                             claim.reading or "—", detail]))
    return rows


CLAIM_HEAD = ["Claim", "Stated", "From reported cells", "From reproduced cells", "Reading over seeds", "Detail"]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(result: TableResult) -> str:
    t = result.table
    out = [f"### {t.id}: {t.caption}", "", header_line(result), ""]
    head, body = _grid(result)
    out.append("| " + " | ".join(_md_escape(h) for h in head) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    out += ["| " + " | ".join(_md_escape(x) for x in line) + " |" for line in body]
    out += ["", LEGEND, *(["", *contributed_summary(result)] if contributed_summary(result) else [])]
    claims = _claim_rows(result)
    if claims:
        out += ["", "Derived claims:", "", "| " + " | ".join(CLAIM_HEAD) + " |", "|---|---:|---:|---:|---|---|"]
        out += ["| " + " | ".join(_md_escape(x) for x in line) + " |" for _, line in claims]
    if t.notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in t.notes]
    return "\n".join(out) + "\n"


def to_csv(result: TableResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "profile", "row", "row_label", "column", "column_label", "reported_printed", "reported",
                     "reported_std", "reproduced_mean", "reproduced_std", "n_seeds", "seeds", "delta", "status",
                     "protocol_hash", "run_ids", "query", "note"])
    t = result.table
    for r in t.rows:
        for c in t.columns:
            cell = result.cell(r.key, c.key)
            rep = cell.reported
            writer.writerow([
                t.id, result.profile, r.key, r.label, c.key, c.label,
                rep.printed if rep else "", rep.value if rep else "", rep.std if rep and rep.std is not None else "",
                "" if cell.mean is None else repr(cell.mean), "" if cell.std is None else repr(cell.std),
                cell.n_seeds, " ".join(map(str, cell.seeds)), "" if cell.delta is None else repr(cell.delta),
                cell.status, cell.protocol or "", " ".join(cell.run_ids),
                cell.query.describe() if cell.query else "", cell.note,
            ])
    return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "†": r"$^\dagger$",
                  "·": r"$\cdot$", "—": "--", "−": "-", "ω": r"$\omega$", "²": r"$^2$", "√": r"$\surd$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(result: TableResult) -> str:
    t = result.table
    widths = [1 if _contributed(c) else 3 for c in t.columns]
    out = ["% " + header_line(result), r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{latex_escape(t.caption)} ({latex_escape(t.title)}; profile {result.profile})}}",
           rf"\label{{tab:{t.id}}}", r"\begin{tabular}{l" + "r" * sum(widths) + "}", r"\toprule"]
    out.append(" & " + " & ".join(rf"\multicolumn{{{w}}}{{c}}{{{latex_escape(c.label)}}}"
                                  for c, w in zip(t.columns, widths)) + r" \\")
    starts = [2 + sum(widths[:i]) for i in range(len(widths))]
    out.append(" ".join(rf"\cmidrule(lr){{{a}-{a + w - 1}}}" for a, w in zip(starts, widths)))
    out.append(" & " + " & ".join(x for w in widths for x in (["Contrib."] if w == 1 else
                                                               ["Rep.", "Repr.", r"$\Delta$"])) + r" \\")
    out.append(r"\midrule")
    _, body = _grid(result)
    out += [" & ".join(latex_escape(x) for x in line) + r" \\" for line in body]
    out += [r"\bottomrule", r"\end{tabular}"]
    claims = _claim_rows(result)
    if claims:
        out += [r"\par\medskip", r"\begin{tabular}{lrrrl}", r"\toprule",
                " & ".join(CLAIM_HEAD[:5]) + r" \\", r"\midrule"]
        out += [" & ".join(latex_escape(x) for x in line[:5]) + r" \\" for _, line in claims]
        out += [r"\bottomrule", r"\end{tabular}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def html_fragment(result: TableResult, record_href: Callable[[str], str] | None = None) -> str:
    """The table as an HTML ``<section>``; ``record_href(run_id)`` links reproduced cells to records."""
    t = result.table
    esc = html.escape
    out = [f'<section class="paper-table" id="{esc(t.id)}">', f"<h2>{esc(t.id)}: {esc(t.caption)}</h2>",
           f'<p class="meta">{esc(header_line(result))}</p>', '<table class="sortable">', "<thead><tr><th>Row</th>"]
    out += [f'<th colspan="{1 if _contributed(c) else 3}">{esc(c.label)}</th>' for c in t.columns]
    out.append("</tr><tr><th></th>" + "".join(
        f"<th>contributed, {esc(reproduced_label(result, c.key))}</th>" if _contributed(c) else
        f"<th>reported</th><th>{esc(reproduced_label(result, c.key))}</th><th>Δ</th>" for c in t.columns))
    out.append("</tr></thead><tbody>")
    for r in t.rows:
        out.append(f"<tr><th scope=\"row\">{esc(row_label(result, r))}{' (contributed)' if _contributed(r) else ''}</th>")
        for c in t.columns:
            cell = result.cell(r.key, c.key)
            title = esc(cell.query.describe() if cell.query else cell.note)
            repro = esc(fmt_reproduced(cell))
            if record_href and cell.run_ids:
                repro = f'<a href="{esc(record_href(cell.run_ids[0]))}">{repro}</a>'
            mark = f' class="{cell.reported.mark}"' if cell.reported is not None and cell.reported.mark else ""
            if _contributed(c):
                out.append(f'<td class="{esc(cell.status)} contributed" title="{title}">{repro}</td>')
                continue
            out.append(f"<td{mark}>{esc(fmt_reported(cell))}</td>"
                       f'<td class="{esc(cell.status)}" title="{title}">{repro}</td><td>{esc(fmt_delta(cell))}</td>')
        out.append("</tr>")
    out += ["</tbody></table>", f'<p class="legend">{esc(LEGEND)}</p>']
    out += [f'<p class="contributed">{esc(line)}</p>' for line in contributed_summary(result)]
    claims = _claim_rows(result)
    if claims:
        out.append('<table class="claims"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in CLAIM_HEAD) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in line) + "</tr>" for _, line in claims]
        out.append("</tbody></table>")
    if t.notes:
        out.append("<ul class=\"notes\">" + "".join(f"<li>{esc(n)}</li>" for n in t.notes) + "</ul>")
    out.append("</section>")
    return "\n".join(out) + "\n"


def to_html(result: TableResult) -> str:
    """A standalone HTML page holding the table."""
    t = result.table
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(t.id)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th[scope=row]{text-align:left}"
            "td.no-run,td.n\\/a{color:#999}td.underline{text-decoration:underline}td.bold{font-weight:bold}</style>"
            "</head><body>\n" + html_fragment(result) + "</body></html>\n")


RENDERERS: dict[str, Callable[[TableResult], str]] = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html}


def render(result: TableResult, fmt: str) -> str:
    """Render in ``fmt`` (one of md, csv, latex, html)."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    return RENDERERS[fmt](result)
