"""One record per ONNX op type: everything the exporter knows about that op, in one place.

Each op family's module lists its records (`RECORDS`); `ops/__init__.py` gathers them in one
table. Every other stage asks the table instead of keeping its own list of op names: whether a
gradient flows and into which inputs (autodiff), what the op says about a map's layout and
whether it is plumbing (targets), how the pooled shortcut treats it (autodiff), which
TensorRT's parser takes it (checks), whether static int8 quantizes it (int8), which inputs an fp16 copy keeps
float32 (fp16), and whether the import folds it when all its inputs are constants (importers).
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.export.ops.context import Rule

GRAD_INPUTS = ("first", "all", "none")  # which inputs a gradient can flow into; none: not differentiable
LAYOUTS = ("follows", "nchw", "breaks", "permutes", "last_axis")  # keeps its input's layout; works
# channels-first; says nothing (flattens, multiplies); moves axes; normalises the last axis (its channels)
POOLED_ROLES = ("blocks", "moves", "window", "permutes", "global", "reduce", "flattens", "dense")
TOKEN_ROLES = ("", "mixes", "mixes_two_activations", "reduces")  # whether it mixes a transformer's tokens:
# always (attention's Softmax), when both inputs are computed (Q @ K^T, A @ V), when it reduces the token axis
PER_TOKEN_ROLES = (
    "",
    "elementwise",
    "last_axis_norm",
    "right_product",
    "normalises_one_axis",
    "permutes",
    "picks",
    "reshapes",
)  # how a ViT's class token can be selected before the op (select_early):
# element by element; a norm of the last axis; rows of a matrix product; a softmax along another axis;
# through a transpose, a pick along another axis, a reshape of later axes
ATTENTION_ROLES = ("", "moves", "projects", "normalises", "combines", "scales")  # its place in torch's
# sequence-first nn.MultiheadAttention (importers/attention_blocks): none (not in plain self-attention); moves
# values (the walk follows input 0); the output projection; the Softmax; products and biases; q's, k's or the
# scores' scalar scale (the walk follows the inputs that are neither constants nor shape arithmetic)
BATCH_FOLD_ROLES = ("", "elementwise", "axes", "joins", "product", "reshape", "transpose", "channel_affine")
# how it works on [N, X, ...] where the file had the batch folded into [N*X, ...] (importers/passes/
# folded_batch): it cannot; unchanged (constants align from the end); its axes counted from the front move
# one back; the same, every input folded (Concat); a matrix product of the last two axes; its target gets
# the batch first; its perm too; BatchNormalization, as a scale and a shift
TENSORRT_VERSIONS = (0, 8.5, 8.6, 10)
INT8_ROLES = ("", "conv", "pool", "relu", "dense")  # what static int8 quantizes: never, or how it is chosen


@dataclass(frozen=True)
class OpRecord:
    """What the project knows about one op type. Defaults describe an op nothing here treats specially."""

    op_type: str
    rule: Rule | None = None  # the derivative: one gradient per input, None where none flows
    grad_inputs: str = "first"
    layout: str = "follows"
    plumbing: bool = False  # its output is pooling or plumbing: never the default layer to explain
    logits_view: bool = False  # passes the logits on with the same ranking (Softmax, Identity): look through it
    pooled: str = "blocks"  # how the pooled shortcut walks it on the way to the spatial sum
    tensorrt: float = 0  # the oldest TensorRT whose ONNX parser takes it, as onnx-tensorrt's docs/operators.md
    # says on its 8.5-GA, 8.6-GA, 10.0-GA and 10.1-GA branches: 8.5 (JetPack 5 and 6), 8.6 (added there:
    # LayerNormalization, GroupNormalization, IsInf; JetPack 6), 10 (added since: Gelu, Mish, ...), 0: none
    tensorrt_note: str = ""  # the conditions it states, where they matter here
    tensorrt_constants: tuple[int, ...] = ()  # inputs the parser needs as initializers (TopK's K, Slice's axes)
    int8: str = ""
    per_token: str = ""  # PER_TOKEN_ROLES: a ViT's class token can be selected before it (select_early)
    attention: str = ""  # ATTENTION_ROLES
    tokens: str = ""  # TOKEN_ROLES: token layers after the last op that mixes tokens reach only the class token
    folds_on_constants: bool = False  # the import evaluates it when every input is a constant
    reads_shape_only: bool = False  # its output depends on its input's shape, not its values (Shape, Size)
    fp32_inputs: tuple[int, ...] = ()  # float inputs the ONNX spec keeps float32 in an fp16 graph (Resize's scales)
    typed_by_attribute: bool = False  # its output type is set by an attribute (Constant's value): fp16 keeps it
    batch_fold: str = ""  # BATCH_FOLD_ROLES
    axes_input: int = 0  # the input listing the axes it works on (Slice's 3, Squeeze's 1), where not attributes
    default_axis: int | None = None  # the axis it works on when its `axis` attribute is left out

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("grad_inputs", self.grad_inputs, GRAD_INPUTS),
            ("layout", self.layout, LAYOUTS),
            ("pooled", self.pooled, POOLED_ROLES),
            ("int8", self.int8, INT8_ROLES),
            ("tokens", self.tokens, TOKEN_ROLES),
            ("per_token", self.per_token, PER_TOKEN_ROLES),
            ("attention", self.attention, ATTENTION_ROLES),
            ("tensorrt", self.tensorrt, TENSORRT_VERSIONS),
            ("batch_fold", self.batch_fold, BATCH_FOLD_ROLES),
        ):
            if value not in allowed:
                raise ValueError(f"{self.op_type}: {field} {value!r} is not one of {allowed}")

    @property
    def differentiable(self) -> bool:
        return self.grad_inputs != "none"

    def positions(self, inputs: int) -> tuple[int, ...]:
        """The input positions a gradient can flow into, for a node with `inputs` inputs."""
        if self.grad_inputs == "all":
            return tuple(range(inputs))
        return (0,) if self.grad_inputs == "first" else ()
