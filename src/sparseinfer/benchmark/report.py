"""Reports a person would put in a document: Markdown and CSV tables, JSON, and PNG charts:
bars per engine for ``compare`` (latency, throughput, CPU %, memory) and one chart per
``scenario`` (:func:`scenario_chart`). Chart functions return what they drew (per panel: its
title, the labels of its line series and its number of bars)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

COLUMNS: list[tuple[str, str, str]] = [  # (key, header, format)
    ("engine", "engine", "{}"),
    ("mean_ms", "mean ms", "{:.3f}"),
    ("median_ms", "median ms", "{:.3f}"),
    ("p90_ms", "p90 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("std_ms", "std ms", "{:.3f}"),
    ("items_per_s", "items/s", "{:.1f}"),
    ("speedup", "items/s vs ref", "{:.2f}x"),
    ("cpu_percent", "CPU %", "{:.0f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("max_abs_diff", "max abs diff", "{:.2e}"),
    ("max_rel_diff", "max rel diff", "{:.2e}"),
    ("iterations", "iterations", "{}"),
]


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    return "" if v is None else fmt.format(v)


def markdown_table(rows: Sequence[dict]) -> str:
    """One row per engine; columns absent from every row are left out."""
    cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join("---" if k == "engine" else "---:" for k, _, _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> None:
    keys = [k for k, _, _ in COLUMNS if any(r.get(k) is not None for r in rows)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in keys})


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, title: str) -> list[dict]:
    """Writes the PNG, closes the figure, returns per panel its title, line series and bars."""
    plt = _pyplot()
    drawn = [{"title": ax.get_title(),
              "lines": [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")],
              "bars": sum(len(c) for c in ax.containers)} for ax in fig.axes]
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def bar_chart(rows: Sequence[dict], path: str | os.PathLike, title: str) -> list[dict]:
    """2x2 PNG: mean latency (p90 as a tick), items/s, CPU %, peak RSS; one bar per engine."""
    plt = _pyplot()
    names = [r["engine"] for r in rows]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cols = [colors[i % len(colors)] for i in range(len(names))]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [("mean_ms", "mean latency (ms, lower is better; tick = p90)"),
              ("items_per_s", "throughput (items/s, higher is better)"),
              ("cpu_percent", "CPU utilisation (% of one core)"),
              ("peak_rss_mib", "peak resident memory (MiB)")]
    for ax, (key, label) in zip(axes.flat, panels):
        vals = [float(r.get(key) or 0.0) for r in rows]
        bars = ax.bar(names, vals, color=cols)
        if key == "mean_ms":
            p90 = [float(r.get("p90_ms") or 0.0) for r in rows]
            ax.scatter(names, p90, marker="_", s=400, color="black", zorder=3)
        top = max(vals + ([max(p90)] if key == "mean_ms" else [])) if vals else 1.0
        ax.set_ylim(0, top * 1.18 if top > 0 else 1)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, title)


def _engines(points: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(p["engine"] for p in points))


def _sweep_chart(points: Sequence[dict], x_key: str, x_label: str, items_label: str, path, title: str,
                 log2_x: bool = False) -> list[dict]:
    """Two panels over ``x_key``: items/s and mean latency (shaded up to p90), a line per engine.
    ``log2_x`` (batch sizes): both axes of the latency panel logarithmic, as latency grows with
    the batch over orders of magnitude."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    for e in _engines(points):
        pts = sorted((p for p in points if p["engine"] == e), key=lambda p: p[x_key])
        xs = [p[x_key] for p in pts]
        left.plot(xs, [p["items_per_s"] for p in pts], marker="o", label=e)
        line, = right.plot(xs, [p["mean_ms"] for p in pts], marker="o", label=e)
        right.fill_between(xs, [p["mean_ms"] for p in pts], [p["p90_ms"] for p in pts], color=line.get_color(),
                           alpha=0.15, linewidth=0)
    left.set_title(f"{items_label} (higher is better)", fontsize=10)
    right.set_title(f"mean latency, ms{', log scale' if log2_x else ''} (shaded up to p90; lower is better)",
                    fontsize=10)
    for ax in (left, right):
        ax.set_xlabel(x_label)
        if log2_x:  # batch sizes 1, 8, 64, ...: evenly spaced, labelled as they are
            ticks = sorted({p[x_key] for p in points})
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(v) for v in ticks])
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        if ax is right and log2_x:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, title)


def _latency_bound_chart(points: Sequence[dict], path, title: str) -> list[dict]:
    """Left: p90 (line) and mean (hollow) latency of every configuration tried, a line per engine
    and stream count, against the bound (log scale: configurations over it can be far over); the
    chosen one starred. Right: each engine's best items/s under the bound."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    bound = points[0]["latency_bound_ms"]
    batches: set[int] = set()
    for i, d in enumerate(points):
        for k, streams in enumerate(dict.fromkeys(t["streams"] for t in d["tried"])):
            tried = [t for t in d["tried"] if t["streams"] == streams]
            batches.update(t["batch_size"] for t in tried)
            color = colors[i % len(colors)]
            xs = [t["batch_size"] for t in tried]
            left.plot(xs, [t["p90_ms"] for t in tried], marker="o", color=color, linestyle=styles[k % len(styles)],
                      label=f"{d['engine']}, {streams} stream{'s' if streams > 1 else ''}")
            left.plot(xs, [t["mean_ms"] for t in tried], marker="o", linestyle="none", markerfacecolor="none",
                      color=color, label="_mean")
        b = d["best"]
        left.scatter([b["batch_size"]], [b["p90_ms"]], marker="*", s=260, color=colors[i % len(colors)],
                     edgecolor="black", zorder=4)
    left.axhline(bound, color="red", linestyle="--", linewidth=1.2, label=f"bound {bound:g} ms")
    left.set_xscale("log", base=2)
    left.set_xticks(sorted(batches), [str(v) for v in sorted(batches)])
    left.set_xlabel("batch size per stream")
    left.set_yscale("log")
    left.set_title("p90 (line) and mean (hollow) latency per configuration, ms; star = chosen", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    names = [d["engine"] for d in points]
    bars = right.bar(names, [d["best"]["items_per_s"] for d in points],
                     color=[colors[i % len(colors)] for i in range(len(points))])
    for bar, d in zip(bars, points):
        b = d["best"]
        right.annotate(f"{b['items_per_s']:.3g}/s\n{b['streams']} stream(s) x batch {b['batch_size']}\n"
                       f"p90 {b['p90_ms']:.3g} ms",
                       (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8,
                       xytext=(0, 2), textcoords="offset points")
    right.set_ylim(0, max(d["best"]["items_per_s"] for d in points) * 1.35)
    right.set_title(f"best items/s with mean and p90 under {bound:g} ms", fontsize=10)
    right.tick_params(axis="x", labelrotation=20, labelsize=8)
    right.grid(axis="y", alpha=0.3)
    return _save(fig, path, title)


def _accuracy_chart(points: Sequence[dict], path, title: str) -> list[dict]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(points) + 2), 4.2))
    xs = np.arange(len(points))
    for off, key in ((-0.2, "top1"), (0.2, "top5")):
        bars = ax.bar(xs + off, [100 * p[key] for p in points], width=0.4, label=key.replace("top", "top-"))
        for bar, p in zip(bars, points):
            ax.annotate(f"{100 * p[key]:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs, [p["engine"] for p in points])
    ax.set_ylim(0, 110)
    ax.set_title(f"accuracy, % of {points[0]['samples']} samples", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, title)


def scenario_chart(doc: dict, path: str | os.PathLike) -> list[dict]:
    """The PNG a report would show for a ``sparseinfer scenario`` document (its exported JSON):
    single-stream: bars per engine (latency, items/s, CPU %, memory); large-batch: items/s and
    latency vs batch size; thread-sweep: vs threads; multi-instance: total items/s and latency vs
    instances; latency-bound: p90 of each configuration against the bound and the best items/s;
    accuracy: top-1/top-5 per engine. A line (or bar) per engine."""
    name, points = doc["scenario"], doc["points"]
    if not points:
        raise ValueError(f"scenario {name!r}: no points to chart")
    hw = doc.get("hardware", {})
    title = f"{name}: {doc['model']}, {doc['num_cores']} cores ({hw.get('cpu', '?')}, {hw.get('isa', '?')})"
    if name == "single-stream":
        return bar_chart(points, path, title + ", batch 1, sync")
    if name == "large-batch":
        return _sweep_chart(points, "batch_size", "batch size", "items/s", path, title + ", sync", log2_x=True)
    if name == "thread-sweep":
        return _sweep_chart(points, "threads", "threads", "items/s", path,
                            title + f", batch {points[0]['batch_size']}, sync")
    if name == "multi-instance":
        return _sweep_chart(points, "instances", "instances (processes, cores split)", "total items/s", path,
                            title + f", batch {points[0]['batch_size']}")
    if name == "latency-bound":
        return _latency_bound_chart(points, path, title)
    if name == "accuracy":
        return _accuracy_chart(points, path, title)
    raise ValueError(f"no chart for scenario {name!r}")


def write_reports(doc: dict, out_dir: str | os.PathLike, stem: str = "compare") -> dict[str, str]:
    """Writes ``stem``.md/.csv/.json/.png into ``out_dir``; returns their paths by kind.
    ``doc["rows"]`` holds one dict per engine; ``doc["title"]`` titles the chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = doc["rows"]
    paths = {k: str(out / f"{stem}.{k}") for k in ("md", "csv", "json", "png")}
    with open(paths["md"], "w") as f:
        f.write(f"**{doc['title']}**\n\n{markdown_table(rows)}\n")
        if doc.get("command"):
            f.write(f"\n`{doc['command']}`\n")
        for msg in doc.get("skipped") or []:
            f.write(f"\n- {msg}\n")
    write_csv(rows, paths["csv"])
    with open(paths["json"], "w") as f:
        json.dump(doc, f, indent=2)
    bar_chart(rows, paths["png"], doc["title"])
    return paths
