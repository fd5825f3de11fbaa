"""The site's stylesheet and script: plain CSS and a few lines of JavaScript, no build step.

``sort.js`` makes every ``table.sortable`` sortable by clicking a column header:
cells sort by their ``data-value`` attribute (numbers; empty sorts last) or by their
text; a second click reverses the order; the header carries ``aria-sort``.
"""
from __future__ import annotations

STYLE_CSS = """\
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2430; background: #fafbfc; }
header { background: #1d3557; color: #fff; padding: 0.8em 2em; }
header a { color: #fff; text-decoration: none; margin-right: 1.5em; }
main { padding: 1em 2em 3em; max-width: 1300px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; background: #fff; font-size: 0.92em; }
th, td { border: 1px solid #d6dbe1; padding: 4px 7px; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; overflow-wrap: anywhere; max-width: 8em; }
th.short { white-space: nowrap; overflow-wrap: normal; }
td.method { white-space: normal; min-width: 11em; max-width: 16em; }
td.value { white-space: normal; min-width: 5.5em; }
td.method .variant { display: block; font-size: 0.8em; color: #5a6472; overflow-wrap: anywhere; }
.ci { color: #5a6472; font-size: 0.85em; }
.verified { color: #1a7f37; font-weight: 600; }
.self-reported { color: #6e7781; }
.scroll { max-width: 100%; overflow-x: auto; }
th { background: #eef1f5; }
td.text, th.text, th[scope=row] { text-align: left; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 0.7em; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; font-size: 0.7em; }
.meta, .legend { color: #5a6472; font-size: 0.9em; }
code { font-size: 0.92em; }
td.no-run, td.n\\/a { color: #9aa3ad; }
td.underline { text-decoration: underline; } td.bold { font-weight: bold; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.gallery figure { margin: 0; background: #fff; border: 1px solid #d6dbe1; padding: 0.5em; }
.gallery img { image-rendering: pixelated; min-width: 256px; max-width: 420px; display: block; }
.gallery figcaption { font-size: 0.8em; color: #5a6472; max-width: 420px; overflow-wrap: anywhere; }
"""

SORT_JS = """\
"use strict";
(function () {
  function cellKey(row, index) {
    var cell = row.children[index];
    if (!cell) { return { num: null, text: "" }; }
    var raw = cell.getAttribute("data-value");
    if (raw !== null && raw !== "" && !isNaN(Number(raw))) { return { num: Number(raw), text: "" }; }
    return { num: null, text: cell.textContent.trim().toLowerCase() };
  }
  function compare(a, b) {
    if (a.num !== null && b.num !== null) { return a.num - b.num; }
    if (a.num !== null) { return -1; }
    if (b.num !== null) { return 1; }
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }
  function sortBy(table, header, index) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var c = compare(cellKey(r1, index), cellKey(r2, index));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.querySelectorAll("th"), function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      var heads = table.tHead ? table.tHead.rows[table.tHead.rows.length - 1].cells : [];
      Array.prototype.forEach.call(heads, function (th, index) {
        th.setAttribute("title", "Click to sort");
        th.addEventListener("click", function () { sortBy(table, th, index); });
      });
    });
  });
})();
"""
