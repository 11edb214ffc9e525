"""Engines: where a Grad-CAM graph runs (a local onnxruntime session, a Triton server), behind one protocol."""
