"""Importers: any ONNX classifier, or a Keras CNN through tf2onnx (forward pass only).

Both give a ForwardGraph: an ONNX graph from the model's float input to its
logits, with the layout of that input. The backward is added later, the same
way for both. Only the Keras importer imports TensorFlow, and only when called.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import onnx

OPSET = 17


class ModelImportError(ValueError):
    """The model cannot be read as an image classifier; the message says what to pass."""


@dataclass(frozen=True)
class ForwardGraph:
    """A classifier's forward pass as ONNX, ready for the backward builder."""

    model: onnx.ModelProto
    input_name: str
    layout: str  # NCHW | NHWC: the model input's layout
    name: str
    layers: tuple[str, ...] = ()  # layers the importer resolved to tensors of the same names (Keras), first first
    layer_layout: str | None = None  # their layout, when the framework says (Keras: NHWC)
    static_batch: bool = False  # the graph runs at batch 1 only (a batch baked in where it could not be freed)
    folded: frozenset[str] = frozenset()  # tensors with the batch folded into their first axis, left so
    folded_why: str = ""  # the op that kept the import from carrying them batch-first

    def copy(self) -> ForwardGraph:
        """An independent copy: building the Grad-CAM graph rewrites `model` in place, so one import
        serves several exports (full and pooled, say) only through copies."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        return replace(self, model=model)
