"""sparseinfer: fast CPU inference for sparse and quantized deep-learning models."""

from sparseinfer.engine import Engine, compile_model
from sparseinfer.errors import ExecutionError, InputError, ModelLoadError, SparseInferError
from sparseinfer.pipeline import Pipeline

__version__ = "0.1.0"
__all__ = ["Engine", "compile_model", "ExecutionError", "InputError", "ModelLoadError", "Pipeline", "SparseInferError", "__version__"]
