"""sparseinfer: fast CPU inference for sparse and quantized deep-learning models."""

__version__ = "0.1.0"
