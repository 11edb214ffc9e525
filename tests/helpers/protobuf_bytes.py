"""ONNX protobuf written byte by byte, for structures onnx's own helpers cannot build (they recurse)."""

from __future__ import annotations

GRAPH_ATTRIBUTE = 5  # AttributeProto.AttributeType.GRAPH


def if_node(graph: bytes) -> bytes:
    """An If node whose then_branch is `graph` (already serialized): NodeProto.op_type = 4, .attribute = 5;
    AttributeProto.name = 1, .g = 6, .type = 20."""
    attribute = field(1, b"then_branch") + field(6, graph) + varint(20 << 3) + varint(GRAPH_ATTRIBUTE)
    return field(4, b"If") + field(5, attribute)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
