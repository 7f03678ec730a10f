"""PlanBuilder: turns a run of natively supported nodes into a _core.Plan.

Values have a logical (ONNX) shape; each may exist physically in the plain row-major layout
and/or in the blocked NCHWc layout the conv kernels use. ``read`` hands an op its input in a
layout it accepts, inserting (and caching) a reorder when needed, so the network stays blocked
from conv to conv and is reordered only where a plain-layout op needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sparseinfer import _core
from sparseinfer.compiler.memory import Interval, plan_arena
from sparseinfer.graph.ir import Graph, Node


# Element types a plan slot can hold, by the name _core uses. Slots are sized in 4-byte words;
# values of the other types are stored as raw bytes (see csrc/runtime/dtype.h).
PLAN_DTYPES: dict[np.dtype, str] = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64",
                                    np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool"}
F32 = np.dtype(np.float32)


def words(shape: Sequence[int], dtype: np.dtype = F32) -> int:
    """4-byte words holding a tensor of ``shape`` and ``dtype``."""
    n = int(np.prod(shape)) if len(shape) else 1
    return -(-n * np.dtype(dtype).itemsize // 4)


def as_words(arr: np.ndarray) -> np.ndarray:
    """The raw bytes of ``arr`` as float32 words (zero-padded), for a constant slot."""
    raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    padded = np.zeros(-(-raw.size // 4) * 4, np.uint8)
    padded[:raw.size] = raw
    return padded.view(np.float32)


@dataclass
class Phys:
    """A physical buffer: one layout of one logical value (or an alias sharing its bytes)."""

    name: str
    layout: str            # "plain" | "nchwc" | "cnhw" (channel-major: C x N x spatial, for sparse convs)
                           # | "fmajor" (feature-major: [..., N] as N x the leading dims, between sparse linear layers)
    shape: tuple[int, ...]  # logical shape
    size: int              # 4-byte words
    root: str = ""          # the buffer this one aliases ("" = itself)
    constant: np.ndarray | None = None
    dtype: np.dtype = F32


@dataclass
class Step:
    op: object
    inputs: list[str]
    outputs: list[str]
    node: Node | None


@dataclass
class NativeSegmentPlan:
    plan: object
    inputs: list[str]
    outputs: list[str]
    output_shapes: list[tuple[int, ...]]
    steps: list[Step] = field(default_factory=list)

    @property
    def kernels(self) -> dict[str, list[str]]:
        """Node name -> the kernel names its steps run (as they are now: an op may give up its
        generated code after lowering)."""
        out: dict[str, list[str]] = {}
        for st in self.steps:
            if st.node is not None:
                out.setdefault(st.node.name, []).append(st.op.kernel_name)
        return out


class PlanBuilder:
    def __init__(self, graph: Graph, block: int, num_threads: int, pin_threads: bool = False):
        self.graph = graph
        self.block = block
        self.num_threads = num_threads
        self.pin_threads = pin_threads
        self.phys: dict[str, Phys] = {}
        self.views: dict[str, dict[str, str]] = {}  # logical name -> layout -> phys name
        self.steps: list[Step] = []
        self.inputs: list[str] = []
        self.choices: dict[str, dict] = {}  # node name -> kernel-choice report (sparse vs dense)
        self._counter = 0

    # ---- values ---------------------------------------------------------------------------
    def _new_phys(self, base: str, layout: str, shape: tuple[int, ...], root: str = "",
                  constant: np.ndarray | None = None, dtype: np.dtype | None = None) -> str:
        self._counter += 1
        name = f"{base}#{layout}{self._counter}"
        if dtype is None:
            dtype = self.graph.dtypes.get(base, F32)
        dtype = np.dtype(dtype)
        if dtype not in PLAN_DTYPES:
            raise TypeError(f"value {base!r} has dtype {dtype}; plans hold {sorted(PLAN_DTYPES.values())}")
        self.phys[name] = Phys(name, layout, tuple(shape), self.physical_size(shape, layout, dtype), root, constant,
                               dtype)
        self.views.setdefault(base, {})[layout] = name
        return name

    def physical_size(self, shape: Sequence[int], layout: str, dtype: np.dtype = F32) -> int:
        """4-byte words of a buffer of ``shape`` in ``layout`` (NCHWc pads channels to the block)."""
        if layout == "nchwc":
            n, c = shape[0], shape[1]
            return int(n * -(-c // self.block) * self.block * int(np.prod(shape[2:])))
        return words(shape, dtype)

    def size(self, phys: str) -> int:
        return self.phys[phys].size

    def add_segment_input(self, name: str) -> None:
        self.inputs.append(name)
        self._new_phys(name, "plain", self.graph.shapes[name])

    def has(self, name: str, layout: str) -> bool:
        return layout in self.views.get(name, {})

    def read(self, name: str, layouts: Sequence[str] = ("plain",)) -> str:
        """A physical buffer of ``name`` in one of ``layouts`` (first available, else a reorder
        into layouts[0])."""
        if name not in self.views and name in self.graph.constants:
            arr = np.ascontiguousarray(self.graph.constants[name])
            return self._new_phys(name, "plain", arr.shape, constant=arr, dtype=arr.dtype)
        have = self.views.get(name)
        if not have:
            raise KeyError(f"value {name!r} has not been produced in this segment")
        for layout in layouts:
            if layout in have:
                return have[layout]
        target = layouts[0]
        if "plain" not in have and target != "plain":  # nchwc <-> cnhw (<-> fmajor) go through plain
            self.read(name, ("plain",))
            have = self.views[name]
        src = have["plain"] if "plain" in have else next(iter(have.values()))
        dst = self._new_phys(name, target, self.graph.shapes[name])
        self.steps.append(Step(self._reorder_op(self.phys[src], target), [src], [dst], None))
        return dst

    def constant(self, base: str, arr: np.ndarray) -> str:
        """A constant buffer for a value derived at compile time (e.g. broadcast parameters),
        named ``base``; created once per builder."""
        if self.has(base, "plain"):
            return self.views[base]["plain"]
        arr = np.ascontiguousarray(arr)
        return self._new_phys(base, "plain", arr.shape, constant=arr, dtype=arr.dtype)

    def write(self, name: str, layout: str = "plain", like: str | None = None) -> str:
        if like is not None:
            layout = self.phys[like].layout
        if layout == "nchwc" and len(self.graph.shapes[name]) < 2:
            layout = "plain"
        return self._new_phys(name, layout, self.graph.shapes[name])

    def workspace(self, node: Node, floats: int) -> str:
        """A scratch buffer for one step of ``node`` (arena-planned, live only in that step)."""
        self._counter += 1
        name = f"{node.name}@workspace{self._counter}"
        self.phys[name] = Phys(name, "plain", (int(floats),), int(floats), dtype=F32)
        return name

    def reorder_ops(self, name: str, target: str) -> list[tuple[object, int, int]]:
        """The ops (with input and output floats) that ``read(name, (target,))`` would insert,
        for cost estimates; none when ``name`` already exists in ``target``."""
        have = self.views.get(name, {})
        if not have or target in have:
            return []
        src = self.phys[have["plain"] if "plain" in have else next(iter(have.values()))]
        return self.layout_change_ops(self.graph.shapes[name], src.layout, target)

    def layout_change_ops(self, shape: Sequence[int], layout: str, target: str) -> list[tuple[object, int, int]]:
        """The reorders (with input and output floats) from a float value of ``shape`` in
        ``layout`` to ``target``, through plain when neither is plain."""
        src = Phys("", layout, tuple(shape), self.physical_size(shape, layout))
        steps = []
        if layout != "plain" and target != "plain":
            steps.append((self._reorder_op(src, "plain"), src.size, self.physical_size(shape, "plain")))
            src = Phys("", "plain", tuple(shape), self.physical_size(shape, "plain"))
        steps.append((self._reorder_op(src, target), src.size, self.physical_size(shape, target)))
        return steps

    def alias(self, new: str, src: str, node: Node) -> None:
        base = self.read(src)
        root = self.phys[base].root or base
        self._new_phys(new, "plain", self.graph.shapes[new], root=root, dtype=self.phys[base].dtype)

    def add(self, op: object, inputs: list[str], outputs: list[str], node: Node | None) -> None:
        self.steps.append(Step(op, inputs, outputs, node))

    def _reorder_op(self, src: Phys, target: str):
        shape = src.shape
        if target == "fmajor" or src.layout == "fmajor":  # plain <-> fmajor: a 2-D transpose
            rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
            return _core.TransposeOp([rows, cols] if target == "fmajor" else [cols, rows], [1, 0])
        n, c, hw = shape[0], shape[1], int(np.prod(shape[2:]))
        if target == "cnhw" or src.layout == "cnhw":  # plain <-> cnhw: swap the two outer axes
            outer = (n, c) if target == "cnhw" else (c, n)
            return _core.TransposeOp([outer[0], outer[1], hw], [1, 0, 2])
        if target == "nchwc":
            return _core.ReorderOp(n, c, hw, self.block, True)
        return _core.ReorderOp(n, c, hw, self.block, False)

    # ---- blocked-layout helpers for ops that can stay in NCHWc ------------------------------
    def blocked_binary_operands(self, a: str, c: str, out_shape: Sequence[int]):
        """Operands for an elementwise Add/Sub/Mul computed directly in NCHWc: both 4-D
        values already blocked, or one blocked and the other a per-channel constant. Padding
        lanes stay 0 for add/sub of zeros and mul by anything finite."""
        if len(out_shape) != 4 or not (self.has(a, "nchwc") or self.has(c, "nchwc")):
            return None
        n, ch, h, w = out_shape
        cb, blk = -(-ch // self.block), self.block
        shapes = []
        for name in (a, c):
            shape = tuple(self.graph.shapes[name])
            full = (1,) * (4 - len(shape)) + shape
            if self.has(name, "nchwc") and len(shape) == 4 and shape[1] == ch:
                shapes.append((self.views[name]["nchwc"], (shape[0], cb, shape[2], shape[3], blk)))
            elif name in self.graph.constants and full[0] == 1 and full[2] == 1 and full[3] == 1 \
                    and full[1] in (1, ch):
                vec = np.broadcast_to(np.asarray(self.graph.constants[name], np.float32).reshape(-1), (ch,))
                padded = np.zeros(cb * blk, np.float32)
                padded[:ch] = vec
                phys = self._new_phys(name + "@blocked", "nchwc", (1, ch, 1, 1),
                                      constant=padded.reshape(1, cb, 1, 1, blk))
                shapes.append((phys, (1, cb, 1, 1, blk)))
            else:
                return None
        return shapes[0], shapes[1], (n, cb, h, w, blk)

    def blocked_concat_operands(self, names: Sequence[str], axis: int):
        if axis != 1 or not all(self.has(n, "nchwc") for n in names):
            return None
        shapes = [self.graph.shapes[n] for n in names]
        if any(len(s) != 4 or s[1] % self.block for s in shapes):
            return None
        outer = shapes[0][0]
        inners = [s[1] * s[2] * s[3] for s in shapes]
        return [self.views[n]["nchwc"] for n in names], outer, inners

    # ---- finishing ------------------------------------------------------------------------
    def finish(self, outputs: Sequence[str]) -> NativeSegmentPlan:
        out_phys: list[str] = []
        used_roots: set[str] = set()
        input_phys = {self.views[i]["plain"] for i in self.inputs}
        for name in outputs:
            p = self.read(name)
            root = self.phys[p].root or p
            if root in input_phys or root in used_roots or self.phys[root].constant is not None \
                    or self.phys[root].size != self.phys[p].size:
                dst = self._new_phys(name, "plain", self.graph.shapes[name])
                self.steps.append(Step(_core.CopyOp(self.phys[p].size), [p], [dst], None))
                p, root = dst, dst
            used_roots.add(root)
            out_phys.append(root)

        plan = _core.Plan(self.num_threads, self.pin_threads)
        slot: dict[str, int] = {}
        for name in self.inputs:
            p = self.views[name]["plain"]
            slot[p] = plan.add_input_slot(list(self.graph.shapes[name]), PLAN_DTYPES[self.phys[p].dtype])
        for name, p in zip(outputs, out_phys):
            slot[p] = plan.add_output_slot(list(self.graph.shapes[name]), PLAN_DTYPES[self.phys[p].dtype])
        # Lifetimes of arena buffers, by alias root.
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for k, st in enumerate(self.steps):
            for p in st.outputs:
                r = self.phys[p].root or p
                first.setdefault(r, k)
                last[r] = max(last.get(r, k), k)
            for p in st.inputs:
                r = self.phys[p].root or p
                last[r] = max(last.get(r, k), k)
        intervals = []
        for r in first:
            if r in slot or self.phys[r].constant is not None:
                continue
            # With several threads, tensors share memory only with tensors of the same layout and
            # shape: the static split of the work then has each memory line written by the same
            # thread layer after layer, instead of handing lines between cores whenever a
            # different tensor reuses them (resnet50-pruned90 b1 on 2 Zen 4 vCPUs in
            # benchmarks/sparse_vs_deepsparse.py, rounds with the host keeping them apart, a
            # ~300 ns cross-core round trip: 22.3 ms before, 20.7 after; 13.3 and 13.1 in the
            # other state; arena 8 -> 11 MB).
            phys = self.phys[r]
            pool = (phys.layout, tuple(phys.shape), phys.size) if self.num_threads > 1 else None
            intervals.append(Interval(r, phys.size, first[r], last[r], pool))
        offsets, arena = plan_arena(intervals)
        for r, off in offsets.items():
            slot[r] = plan.add_arena_slot(off, self.phys[r].size)

        def slot_of(p: str) -> int:
            r = self.phys[p].root or p
            if r not in slot:
                const = self.phys[r].constant
                if const is None:
                    raise RuntimeError(f"internal error: buffer {r} has no slot")
                slot[r] = plan.add_constant_slot(as_words(const))
            return slot[r]

        for st in self.steps:
            plan.add_op(st.op, [slot_of(p) for p in st.inputs], [slot_of(p) for p in st.outputs])
        plan.set_arena_size(arena)
        return NativeSegmentPlan(plan, list(self.inputs), list(outputs),
                                 [tuple(self.graph.shapes[o]) for o in outputs], self.steps)
