"""Serve Grad-CAM graphs from a real Triton Inference Server on this machine, without a GPU server.

    python scripts/triton_serve.py models/vgg16_gradcam_pooled.onnx [more graphs] [--repo DIR]

Writes the Python-backend variant of each graph's Triton repository (the same config.pbtxt fields as
gradcam-export --triton-repo writes; onnxruntime runs the graph inside the server), starts NVIDIA's
tritonserver from the nvidia-pytriton wheel in a venv of its own (made once from the system Python,
scripts/triton_server.py), prints the gRPC and HTTP addresses, and serves until Ctrl-C. On a GPU server,
run the onnxruntime variant in NVIDIA's container instead (README, "A Triton model repository").
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.export.triton.repository import TritonOptions, TritonRepoError, write_repository  # noqa: E402
from tests.helpers import triton_server  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graphs", nargs="+", type=Path, help="Grad-CAM graphs from gradcam-export")
    parser.add_argument("--repo", type=Path, help="where the repository goes (default: a temporary folder)")
    parser.add_argument("--max-batch", type=int, default=8, help="the most frames Triton batches together")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gradcam-triton-") as tmp:
        repo = args.repo or Path(tmp) / "repo"
        options = TritonOptions(backend="python", device="cpu", max_batch_size=args.max_batch)
        try:
            names = [write_repository(graph, repo, options=options).name for graph in args.graphs]
            server = triton_server.start(repo, Path(tmp))
        except (TritonRepoError, triton_server.TritonUnavailable) as exc:
            print(f"triton_serve: {exc}", file=sys.stderr)
            return 2
        print(f"serving {', '.join(names)}: grpc://{server.grpc}/NAME and http://{server.http}/NAME; Ctrl-C stops")
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
