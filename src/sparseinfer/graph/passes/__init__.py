"""Graph passes: each is a pure function Graph -> Graph.

``optimize`` runs them in the order the compiler relies on."""

from sparseinfer.graph.ir import Graph, remove_unused
from sparseinfer.graph.passes.eliminate import eliminate_identities
from sparseinfer.graph.passes.fold_batchnorm import fold_batchnorm
from sparseinfer.graph.passes.fold_constants import fold_constants
from sparseinfer.graph.passes.fuse_attention import fuse_attention
from sparseinfer.graph.passes.fuse_epilogue import fuse_epilogues
from sparseinfer.graph.passes.fuse_gelu import fuse_gelu
from sparseinfer.graph.passes.fuse_layernorm import fuse_layernorm
from sparseinfer.graph.passes.infer_shapes import infer_shapes


def optimize(graph: Graph) -> Graph:
    graph = eliminate_identities(graph)
    # Folding Shape ops can settle shapes, which lets more Shape ops fold: iterate to a fixpoint.
    for _ in range(8):
        before = len(graph.nodes)
        graph = infer_shapes(fold_constants(graph))
        if len(graph.nodes) == before:
            break
    graph = fold_batchnorm(graph)
    graph = fuse_layernorm(graph)
    graph = fuse_gelu(graph)  # before the epilogues: a GEMM absorbs the fused Gelu
    graph = fuse_attention(graph)
    graph = fuse_epilogues(graph)
    return remove_unused(graph)


__all__ = ["optimize", "eliminate_identities", "fold_constants", "fold_batchnorm", "fuse_layernorm", "fuse_gelu", "fuse_attention",
           "fuse_epilogues", "infer_shapes", "remove_unused"]
