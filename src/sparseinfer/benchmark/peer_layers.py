"""Layer by layer against DeepSparse: where an engine-level gap comes from.

DeepSparse's ``deepsparse.debug_analysis`` times its compiled subgraphs one by one ("pyramid"
groups of fused layers, single "ks_convolution" layers, ...) and names, per row, the ONNX values
the row produces ("Canonical Name"). ``parse_debug_analysis`` reads that table;
``layers_of_rows`` maps each row to the ONNX nodes that compute those values (from each value
back along first inputs to its convolution or linear layer), so our own per-node profile
(``CompiledGraph.profile``) can be summed over the same groups: ``compare_rows``.
"""

from __future__ import annotations

import re
import subprocess
from typing import Iterable, Mapping, Sequence

import onnx

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def parse_debug_analysis(text: str) -> tuple[list[dict], int]:
    """DeepSparse's debug-analysis report -> (rows, batch size). Each row: ``name``, ``kind``
    (the name without its index, e.g. ``ks_convolution``), ``out_dims``, ``kernel_dims``,
    ``ms`` (the row's time for the whole batch) and ``values`` (the ONNX values it produces).
    Raises ValueError when the text holds no layer table or no batch size."""
    rows: list[dict] = []
    columns: list[str] | None = None
    batch = None
    for line in text.splitlines():
        if line.startswith("=="):  # the summaries after the table
            columns = None
        cells = [c.strip() for c in line.split("|")]
        if cells[0] == "Name" and "Time(ms)" in cells:
            columns = cells
            continue
        m = re.match(r"^Batch Size:\s*(\d+)", line.strip())
        if m:
            batch = int(m.group(1))
        if columns is None or len(cells) != len(columns) or cells[0].startswith("Naive Subgraph"):
            continue
        row = dict(zip(columns, cells))
        if not _NUMBER.match(row["Time(ms)"]):
            continue
        canonical = row.get("Canonical Name", "")
        rows.append({
            "name": row["Name"],
            "kind": re.sub(r"(-[\d.]+%)?_\d+$", "", row["Name"]),
            "out_dims": row.get("OutDims", ""),
            "kernel_dims": row.get("KerDims", ""),
            "ms": float(row["Time(ms)"]),
            "values": [v for v in canonical.split(",") if v and v != "<none>"],
        })
    if not rows:
        raise ValueError("no layer table in the DeepSparse debug analysis output (expected a 'Name | ... | "
                         "Time(ms) | ...' header followed by rows)")
    if batch is None:
        raise ValueError("no 'Batch Size: N' line in the DeepSparse debug analysis output")
    return rows, batch


def layers_of_rows(model: onnx.ModelProto, rows: Sequence[Mapping]) -> list[list[str]]:
    """Per row, the names of the ONNX nodes that compute its values: from each value back along
    first inputs up to and including the nearest convolution or linear layer (a BatchNorm,
    activation or pooling on the way belongs to the same row). A node already claimed by an
    earlier row is not claimed again."""
    producer = {o: n for n in model.graph.node for o in n.output}
    claimed: set[str] = set()
    out = []
    for row in rows:
        names = []
        for value in row["values"]:
            node = producer.get(value)
            while node is not None and node.name not in claimed:
                claimed.add(node.name)
                names.append(node.name)
                if node.op_type in WEIGHTED_OPS or not node.input:
                    break
                node = producer.get(node.input[0])
        out.append(names)
    return out


def _times(theirs: float, mine: float, digits: int) -> dict:
    """Both engines' ms per image, rounded, and DeepSparse's time over ours (None without ours)."""
    return {"deepsparse_ms_per_image": round(theirs, digits), "sparseinfer_ms_per_image": round(mine, digits),
            "speedup_vs_deepsparse": round(theirs / mine, 3) if mine > 0 else None}


def compare_rows(rows: Sequence[Mapping], layers: Sequence[Sequence[str]], batch: int,
                 profile: Iterable[Mapping], profile_per_image: bool) -> dict:
    """DeepSparse's rows next to the sum of our profile rows (``node``, ``ms``) over the same
    layers, in ms per image. ``profile_per_image``: our rows are per image already (a batch run
    as streams), else for the whole batch. Our rows of no DeepSparse row (layout copies, nodes
    DeepSparse's values do not reach) are summed under ``unmatched``."""
    ours: dict[str, float] = {}
    for r in profile:
        ours[r["node"]] = ours.get(r["node"], 0.0) + float(r["ms"]) / (1 if profile_per_image else batch)
    table = []
    kinds: dict[str, list[float]] = {}  # kind -> [DeepSparse's ms, ours]
    for row, names in zip(rows, layers):
        theirs, mine = row["ms"] / batch, sum(ours.pop(n, 0.0) for n in names)
        table.append({"deepsparse_row": row["name"], "layers": list(names), **_times(theirs, mine, 4)})
        k = kinds.setdefault(row["kind"], [0.0, 0.0])
        k[0] += theirs
        k[1] += mine
    unmatched = sum(ours.values())
    return {"rows": table, "by_kind": {kind: _times(t, m, 3) for kind, (t, m) in kinds.items()},
            "unmatched_ms_per_image": {n: round(v, 4) for n, v in sorted(ours.items(), key=lambda kv: -kv[1]) if v},
            "deepsparse_total_ms_per_image": round(sum(t for t, _ in kinds.values()), 3),
            "sparseinfer_total_ms_per_image": round(unmatched + sum(m for _, m in kinds.values()), 3)}


def run_debug_analysis(python: str, model_path: str, batch: int, cores: int, iterations: int = 3,
                       timeout: float = 1800.0) -> str:
    """DeepSparse's debug analysis of ``model_path`` by ``python`` (a Python with deepsparse:
    ``runners.deepsparse_python``); its report text. Raises RuntimeError with the tail of its
    output when it fails."""
    cmd = [python, "-m", "deepsparse.debug_analysis", "-ncores", str(cores), "-b", str(batch), "-wi", "1",
           "-bi", str(iterations), model_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-800:]
        raise RuntimeError(f"deepsparse.debug_analysis failed ({proc.returncode}): {tail}")
    return proc.stdout
