"""The reverse pass: the head after a target (head.py) and its backward in ONNX ops (backward.py)."""
