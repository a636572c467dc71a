"""The comparison report: ``results.csv``, ``pareto.png``, ``curves.png``, ``report.md``, ``report.html``.

Everything here reads the rows :mod:`platelab.compare` measured (one dict per model)
and draws or writes them; nothing is measured here. ``report.html`` is self-contained:
its pictures are embedded as ``data:`` URIs, so it can be mailed or attached as it is.
A table column shows when some row has its key; a row without a value there (a
localiser has no AP50:95 or corner error) shows ``–``, as does a NaN.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from platelab.atomic import atomic_open, atomic_write_bytes

# The two tables of report.md/html, (key, header, format) columns each; the extra
# evaluation sets' columns join the accuracy table.
TABLES = {
    "speed": (
        ("model", "model", "{}"),
        ("params", "params (M)", "{:.2f}"),
        ("gflops", "GFLOPs", "{:.2f}"),
        ("size_mb", "ckpt MB", "{:.1f}"),
        ("latency_p50_ms", "latency p50 (ms)", "{:.1f}"),
        ("fps", "FPS", "{:.1f}"),
        ("throughput_img_s", "img/s at batch N", "{:.1f}"),
        ("epochs", "epochs", "{}"),
        ("train_minutes", "train min", "{:.1f}"),
    ),
    "accuracy": (
        ("model", "model", "{}"),
        ("mean_iou", "mean IoU", "{:.3f}"),
        ("acc_iou50", "acc@0.5", "{:.3f}"),
        ("acc_iou70", "acc@0.7", "{:.3f}"),
        ("precision", "P", "{:.3f}"),
        ("recall", "R", "{:.3f}"),
        ("f1", "F1", "{:.3f}"),
        ("ap50", "AP50", "{:.3f}"),
        ("ap50_95", "AP50:95", "{:.3f}"),  # detectors only
        ("corner_error_px", "corner err (px)", "{:.2f}"),  # detectors only
        ("accuracy", "plate acc", "{:.3f}"),  # recognisers only, from here
        ("cer", "CER", "{:.3f}"),
        ("province_accuracy", "province acc", "{:.3f}"),
        ("accuracy_at_90", "acc@90% kept", "{:.3f}"),
    ),
}
TABLE_TITLES = {"speed": "Size and speed", "accuracy": "Accuracy"}
MISSING = "–"  # a value the row's model does not measure
LOWER_IS_BETTER = ("_ms", "_px", "cer")  # column key suffixes


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_summary() -> str:
    """One line naming the CPU (or GPU), the core count and the Python/torch versions."""
    import torch

    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


# -- results.csv --------------------------------------------------------------------
def write_results_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One row per model; the columns are the union of the rows' keys, in first-seen order."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    return path


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """Which points no other point beats on both axes (higher is better on both).

    A point is dominated when another is at least as good on both axes and strictly
    better on one; ties on both axes keep both on the front.
    """
    pts = np.asarray([xs, ys], dtype=np.float64).T.reshape(-1, 2)
    front = []
    for p in pts:
        better = (pts >= p).all(axis=1) & (pts > p).any(axis=1)
        front.append(not bool(better.any()))
    return front


# -- pictures ------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(
    rows: Sequence[Mapping[str, Any]], metric: str, path: Path, title: str = ""
) -> Path:
    """Accuracy (``metric``) against FPS, marker area by params, the Pareto front drawn.

    FPS is on a log axis (backbones differ by orders of magnitude); the front is the
    staircase through the models no other model beats on both speed and accuracy.
    """
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fps = [float(r["fps"]) for r in rows]
    acc = [float(r[metric]) for r in rows]
    params = np.array([float(r["params"]) for r in rows])
    front = pareto_front(fps, acc)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    area = 60 + 1400 * np.sqrt(params / max(params.max(), 1.0))
    colours = ["tab:red" if f else "tab:blue" for f in front]
    ax.scatter(fps, acc, s=area, c=colours, alpha=0.55, edgecolors="black", linewidths=0.8)
    for r, x, y in zip(rows, fps, acc, strict=True):
        ax.annotate(
            f"{r['model']}\n{float(r['params']) / 1e6:.2f}M params",
            (x, y),
            textcoords="offset points",
            xytext=(8, 8),
            fontsize=8,
        )
    on = sorted((x, y) for x, y, f in zip(fps, acc, front, strict=True) if f)
    if len(on) > 1:
        # The staircase bounding what the front dominates: between two front models the
        # line sits at the faster one's accuracy.
        xs, ys = zip(*on, strict=True)
        ax.step(xs, ys, where="pre", ls="--", c="tab:red", lw=1.2, label="Pareto front")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 30, not 3x10^1
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("FPS at batch 1 (log scale)")
    ax.set_ylabel(_label(metric) + (" (every plate, IoU 0.5)" if metric == "ap50" else ""))
    lo, hi = min(acc), max(acc)
    pad = max(0.05, (hi - lo) * 0.15)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1 else hi + pad)
    ax.set_xlim(min(fps) / 1.6, max(fps) * 1.8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(
        title or f"{_label(metric)} against speed (marker area: params; red: Pareto front)"
    )
    fig.tight_layout()
    _save(fig, path)
    return path


def _label(metric: str) -> str:
    return {"mean_iou": "mean IoU", "median_iou": "median IoU", "acc_iou50": "acc@0.5",
            "acc_iou70": "acc@0.7", "ap50": "AP50", "ap70": "AP70", "f1": "F1",
            "ap50_95": "AP50:95", "ap75": "AP75", "accuracy": "plate accuracy",
            "cer": "CER", "accuracy_at_90": "accuracy at 90% kept"}.get(
        metric, metric.replace("_", " "))  # fmt: skip


def _read_curves(metrics_csv: Path, metric: str = "mean_iou") -> dict[str, list[float]]:
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for key in ("epoch", "train_loss", "val_loss", metric):
        out[key] = [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]
    return out


def curves_plot(
    runs: Mapping[str, Path], path: Path, monitors: Mapping[str, str] | None = None
) -> Path:
    """Per model: train and val loss, and its monitored validation metric, against epoch.

    Args:
        runs: model name -> its ``metrics.csv``.
        monitors: model name -> the ``metrics.csv`` column on the right panel (default
            ``mean_iou``); models monitoring different metrics are labelled with theirs.
    """
    plt = _pyplot()
    monitors = {name: (monitors or {}).get(name, "mean_iou") for name in runs}
    one = len(set(monitors.values())) <= 1
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, (name, csv_path) in enumerate(runs.items()):
        key = monitors[name]
        c = _read_curves(csv_path, key)
        colour = f"C{i}"
        ax_loss.plot(c["epoch"], c["train_loss"], "-o", c=colour, ms=3, label=f"{name} train")
        ax_loss.plot(c["epoch"], c["val_loss"], "--", c=colour, label=f"{name} val")
        label = name if one else f"{name} ({_label(key)})"
        ax_iou.plot(c["epoch"], c[key], "-o", c=colour, ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    what = _label(next(iter(monitors.values()), "mean_iou")) if one else "monitored metric"
    ax_iou.set(xlabel="epoch", ylabel=f"val {what}", title=f"validation {what}")
    for ax in (ax_loss, ax_iou):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


# -- report.md / report.html -----------------------------------------------------------
def _cell(row: Mapping[str, Any], key: str, fmt: str) -> str:
    v = row.get(key, "")
    if v in ("", None) or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if key == "params":
        v = float(v) / 1e6
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _extra_columns(rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str]) -> list[tuple]:
    cols = []
    for name in extra_sets:
        pairs = (("acc_iou50", "acc@0.5"), ("mean_iou", "mean IoU"), ("accuracy", "plate acc"))
        for k, label in (*pairs, ("cer", "CER")):
            if any(f"{name}_{k}" in r for r in rows):
                cols.append((f"{name}_{k}", f"{name} {label}", "{:.3f}"))
    return cols


def table_columns(
    rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str] = (), part: str = "accuracy"
) -> list:
    """The (key, header, format) columns of one results table (``speed`` or ``accuracy``)."""
    cols = [c for c in TABLES[part] if any(c[0] in r for r in rows)]
    return cols + (_extra_columns(rows, extra_sets) if part == "accuracy" else [])


def _table(
    rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str], part: str
) -> tuple[list[tuple], list[list[tuple[str, bool]]]]:
    """``(columns, cells)``: each row's formatted cells with whether it is its column's best."""
    cols = table_columns(rows, extra_sets, part)
    best = _best_per_column(rows, cols)
    cells = [[(_cell(r, k, f), best.get(k) == i) for k, _, f in cols] for i, r in enumerate(rows)]
    return cols, cells


def markdown_table(
    rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str] = (), part: str = "accuracy"
) -> str:
    """One results table as GitHub markdown (a column's unique best value in bold)."""
    cols, cells = _table(rows, extra_sets, part)
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |"]
    lines.append("|" + "|".join("---" if k == "model" else "---:" for k, _, _ in cols) + "|")
    for row in cells:
        lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in row) + " |")
    return "\n".join(lines)


def markdown_tables(rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str] = ()) -> str:
    """Both results tables, each under a bold title."""
    return "\n\n".join(
        f"**{TABLE_TITLES[part]}**\n\n{markdown_table(rows, extra_sets, part)}" for part in TABLES
    )


def _best_per_column(rows: Sequence[Mapping[str, Any]], cols: Sequence[tuple]) -> dict[str, int]:
    """Row index of the best value of each accuracy/speed column (lower is better for ms/MB)."""
    best = {}
    for k, _, _ in cols:
        if k in ("model", "epochs", "train_minutes", "params", "gflops", "size_mb"):
            continue
        vals = [float(r[k]) if r.get(k) not in ("", None) else math.nan for r in rows]
        if len(vals) < 2 or all(math.isnan(v) for v in vals):
            continue
        lower = k.endswith(LOWER_IS_BETTER)
        arr = np.array([(-v if lower else v) if not math.isnan(v) else -np.inf for v in vals])
        if (arr == arr.max()).sum() == 1:  # a tie (all 0.000, say) has no best
            best[k] = int(arr.argmax())
    return best


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_markdown(path: Path, ctx: Mapping[str, Any]) -> Path:
    """``report.md``: the setting, the table, the pictures (relative links)."""
    out = Path(path).parent
    lines = [f"# {ctx['title']}", "", *[f"- {s}" for s in ctx["setting"]], ""]
    lines += ["## Results", "", markdown_tables(ctx["rows"], ctx["extra_sets"]), ""]
    lines += [f"{ctx['note']}", ""] if ctx.get("note") else []
    for caption, img in ctx["figures"]:
        lines += [f"### {caption}", "", f"![{caption}]({os.path.relpath(img, out)})", ""]
    if ctx.get("links"):
        lines += ["## Other files", ""]
        lines += [f"- [{label}]({os.path.relpath(p, out)})" for label, p in ctx["links"]]
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1b1f24;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
h3{margin:1em 0 .3em}
ul.setting{color:#444;font-size:.92em}
table{border-collapse:collapse;font-size:.88em;margin:1em 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f3f5f7}td:first-child,th:first-child{text-align:left;font-weight:600}
tr.front td:first-child::after{content:" \\2605";color:#c0392b}
td.best{font-weight:700;background:#eafbea}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
"""


def _html_table(rows: Sequence[Mapping[str, Any]], extra_sets: Sequence[str], part: str) -> str:
    esc = html.escape
    cols, cells = _table(rows, extra_sets, part)
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in cols)
    body = []
    for r, row in zip(rows, cells, strict=True):
        tds = "".join(
            f'<td class="best">{esc(t)}</td>' if b else f"<td>{esc(t)}</td>" for t, b in row
        )
        front = ' class="front"' if str(r.get("pareto", "")) in ("1", "True") else ""
        body.append(f"<tr{front}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(path: Path, ctx: Mapping[str, Any]) -> Path:
    """``report.html``: like report.md, with every picture embedded (no outside files)."""
    esc = html.escape
    tables = [
        f"<h3>{esc(TABLE_TITLES[part])}</h3>" + _html_table(ctx["rows"], ctx["extra_sets"], part)
        for part in TABLES
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(ctx['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(ctx['title'])}</h1>",
        '<ul class="setting">' + "".join(f"<li>{esc(s)}</li>" for s in ctx["setting"]) + "</ul>",
        "<h2>Results</h2>",
        *tables,
    ]
    if ctx.get("note"):
        parts.append(f"<p>{esc(ctx['note'])}</p>")
    for caption, img in ctx["figures"]:
        parts.append(
            f'<figure><img src="{_data_uri(img)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    if ctx.get("links"):
        parts.append("<h2>Other files</h2><ul>")
        out = Path(path).parent
        parts += [
            f'<li><a href="{esc(os.path.relpath(p, out))}">{esc(label)}</a></li>'
            for label, p in ctx["links"]
        ]
        parts.append("</ul>")
    parts.append("</body></html>")
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return path
