"""The two image layouts an input or a feature map can have."""

from __future__ import annotations

NCHW, NHWC = "NCHW", "NHWC"
LAYOUTS = (NCHW, NHWC)
