"""Reports a person would put in a document: Markdown and CSV tables, JSON, and PNG bar charts
(latency, throughput, CPU %, memory; one bar per engine)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

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


def bar_chart(rows: Sequence[dict], path: str | os.PathLike, title: str) -> None:
    """2x2 PNG: mean latency (p90 as a tick), items/s, CPU %, peak RSS; one bar per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
