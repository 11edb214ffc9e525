"""One-line messages from other libraries' exceptions (onnx, onnxruntime), for errors that say what to do."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of the exception's text, cut to `limit` characters; its type when it has no text."""
    text = str(exc)
    return text.splitlines()[0][:limit] if text else type(exc).__name__
