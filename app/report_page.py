"""``results/index.html``: every result on one page that opens from disk, grouped by topic.

Charts are embedded as base64 ``data:`` URIs and the style is inline, so the file needs no
network and no other file. Each result shows its newest run (chart, table, takeaway) beside
the run before it (its takeaway, key numbers and chart), read from ``results/runs/``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from dataflow_playground.app.run_history import KEEP_RUNS, Run, runs

INDEX = "index.html"

# The book's topics, in reading order; a result goes to the first topic naming it (or its prefix).
TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Dataflow modes", ("flow",)),
    ("Batch vs stream, and features", ("batch_vs_stream", "batch", "stream", "parity", "features")),
    ("Formats and storage engines", ("formats", "layout", "engines", "models", "etl_vs_elt", "etl")),
    ("Kafka and throughput", ("demo", "bench_kafka", "kafka", "produce")),
    ("Reliability and chaos", ("chaos", "reliability", "recovery", "fault")),
    ("Training data", ("sampling", "leakage", "serving", "train")),
)
OTHER_TOPIC = "Other results"
# Words that mark a figure worth comparing between runs (see ``key_numbers``).
_KEY_WORDS = ("per_s", "p50", "p95", "p99", "_ms", "bytes", "ratio", "auc", "rmse", "bias",
              "mismatch", "lost", "duplicated", "dead", "recovery", "speedup", "wall_s", "cpu")
_SKIP_KEYS = {"machine", "libraries", "parameters", "repeats_s", "written_at", "seed"}
MAX_KEY_NUMBERS = 12

_md = MarkdownIt("js-default")  # CommonMark + tables, raw HTML escaped
_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$", re.MULTILINE)

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1500px;padding:0 1.2em;color:#222}
h1{margin-bottom:.2em} nav a{margin-right:1em} h2{border-bottom:2px solid #ddd;margin-top:2em}
section.result{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.runs{display:flex;gap:1.2em;flex-wrap:wrap} .runs>div{flex:1 1 600px;min-width:0}
.previous{background:#f7f7f7;padding:.3em .8em;border-radius:4px}
img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;font-size:13px;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right} th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
.takeaway{font-weight:500} .meta{color:#666;font-size:13px}
"""


def topic_of(name: str) -> str:
    for topic, names in TOPICS:
        if any(name == n or name.startswith(f"{n}_") or name.startswith(f"{n}-") for n in names):
            return topic
    return OTHER_TOPIC


def _data_uri(png: Path | None) -> str | None:
    if png is None or not png.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _table_html(md_path: Path | None) -> str:
    """The Markdown body between the title and the takeaway, as HTML (image lines dropped)."""
    if md_path is None or not md_path.is_file():
        return ""
    text = md_path.read_text()
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]  # the title is the section's heading already
    body = _IMAGE_LINE.sub("", "\n".join(lines))
    body = body.split("**Takeaway:**")[0]
    return _md.render(body)


def _flatten(doc: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k not in _SKIP_KEYS:
                out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out[prefix] = float(doc)
    return out


def key_numbers(new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Figures both runs report (name, newest, previous), the ones named like measures first."""
    a, b = _flatten(new), _flatten(old)
    common = [k for k in a if k in b]
    keyed = [k for k in common if any(w in k.lower() for w in _KEY_WORDS)]
    rest = [k for k in common if k not in keyed]
    return [(k, a[k], b[k]) for k in (keyed + rest)[:MAX_KEY_NUMBERS]]


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"


def _change(new: float, old: float) -> str:
    if old == 0:
        return "-" if new == 0 else "new"
    # No colour: whether up is good depends on the figure (events/s vs latency).
    return f"{(new - old) / abs(old) * 100:+.1f}%"


def _key_table(rows: list[tuple[str, float, float]]) -> str:
    if not rows:
        return "<p class=meta>No figure in common with the previous run.</p>"
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_num(n)}</td><td>{_num(o)}</td>"
                   f"<td>{_change(n, o)}</td></tr>" for k, n, o in rows)
    return ("<table><tr><th>figure</th><th>newest</th><th>previous</th><th>change</th></tr>"
            f"{body}</table>")


def _img(src: str | None, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">' if src else "<p class=meta>No chart.</p>"


def _result_html(name: str, latest: Path, history: list[Run]) -> str:
    doc = _load(latest / f"{name}.json")
    title = str(doc.get("title", name))
    newest = history[-1] if history else None
    previous = history[-2] if len(history) > 1 else None
    params = json.dumps(doc.get("parameters", {}), default=str)
    written = html.escape(str(doc.get("written_at", "?")))
    parts = [f'<section class="result" id="{html.escape(name)}">',
             f"<h3>{html.escape(title)}</h3>",
             f"<p class=meta><code>{html.escape(name)}</code> written {written}"
             f"; parameters <code>{html.escape(params)}</code>; {len(history)} run(s) kept</p>",
             '<div class="runs"><div>',
             f"<p class=takeaway><b>Takeaway:</b> {html.escape(str(doc.get('takeaway', '')))}</p>",
             _img(_data_uri(latest / f"{name}.png"), title),
             _table_html(latest / f"{name}.md"),
             "</div>"]
    if previous is not None and newest is not None:
        old = previous.doc()
        parts += ['<div class="previous">',
                  f"<h4>Previous run, {html.escape(previous.written_at)}</h4>",
                  f"<p><b>Takeaway then:</b> {html.escape(str(old.get('takeaway', '')))}</p>",
                  "<p class=meta>Key figures, newest vs previous:</p>",
                  _key_table(key_numbers(doc, old)),
                  "<details><summary>previous chart and table</summary>",
                  _img(_data_uri(previous.file("png")), f"{title} (previous run)"),
                  _table_html(previous.file("md")), "</details></div>"]
    else:
        parts.append('<div class="previous"><p class=meta>No previous run kept yet.</p></div>')
    parts.append("</div></section>")
    return "\n".join(parts)


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def result_names(results_dir: Path) -> list[str]:
    """Names with a current ``<name>.json`` in the results folder."""
    return sorted(p.stem for p in results_dir.glob("*.json") if _load(p).get("name") == p.stem)


def render_index(results_dir: Path) -> str:
    names = result_names(results_dir)
    grouped: dict[str, list[str]] = {}
    for name in names:
        grouped.setdefault(topic_of(name), []).append(name)
    order = [t for t, _ in TOPICS] + [OTHER_TOPIC]
    topics = [t for t in order if t in grouped]
    nav = " ".join(f'<a href="#topic-{i}">{html.escape(t)}</a>' for i, t in enumerate(topics))
    sections = []
    for i, topic in enumerate(topics):
        sections.append(f'<h2 id="topic-{i}">{html.escape(topic)}</h2>')
        sections += [_result_html(n, results_dir, runs(results_dir, n)) for n in grouped[topic]]
    empty = "" if names else "<p>No results yet: run a lab, benchmark or flow command.</p>"
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<title>dataflow-playground results</title>"
            f"<style>{_STYLE}</style></head><body>"
            "<h1>dataflow-playground results</h1>"
            f"<p class=meta>{len(names)} result(s); each beside its previous run "
            f"(the newest {KEEP_RUNS} runs of each are kept in runs/).</p>"
            f"<nav>{nav}</nav>{empty}{''.join(sections)}</body></html>\n")


def build_index(results_dir: Path) -> Path:
    """Write ``<results_dir>/index.html`` from the results and their runs; return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / INDEX
    tmp = path.with_name(f".{INDEX}.{os.getpid()}.tmp")  # two writers at once each replace whole
    tmp.write_text(render_index(results_dir), encoding="utf-8")
    tmp.replace(path)
    return path
