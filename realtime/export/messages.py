"""One-line messages from other libraries' exceptions (onnx, onnxruntime), for errors that say what to do."""

from __future__ import annotations

import re

# onnxruntime's messages carry the C++ source and function before what went wrong:
# "... Status Message: /onnxruntime_src/.../reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const
# onnxruntime::TensorShape&, ...) input_shape_size == requested_shape_size was false. The input tensor cannot be
# reshaped to the requested shape. Input shape:{1,2,4,16,197}, requested shape:{1,2,16,197}"
_SOURCE = re.compile(r"\S+\.(?:h|cc|cpp):\d+ [\w:~<>]+\((?:[^()]|\([^()]*\))*\)\s*")
_CONDITION = re.compile(r"\S+ [=!<>]=? \S+ was false\.\s*")


def first_line(exc: BaseException, limit: int = 400) -> str:
    """The first line of the exception's text without onnxruntime's C++ source location (so that what went
    wrong, the shapes, fits), cut to `limit` characters; its type when it has no text."""
    text = str(exc)
    if not text:
        return type(exc).__name__
    line = _CONDITION.sub("", _SOURCE.sub("", text.splitlines()[0].replace("[ONNXRuntimeError] : ", "")))
    return line[:limit]
