"""Exceptions users see. Each message names what was wrong and what was expected."""


class SparseInferError(Exception):
    """Base class of sparseinfer's own errors."""


class ModelLoadError(SparseInferError, ValueError):
    """The model file or object is missing, truncated, malformed or not ONNX."""


class InputError(SparseInferError, ValueError):
    """Inputs given to Engine.run do not match what the model expects."""


class ExecutionError(SparseInferError, RuntimeError):
    """A region of the model failed while running (e.g. the ONNX Runtime fallback rejected a
    value); the message names the region's op types."""
