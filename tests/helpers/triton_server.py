"""A real Triton Inference Server on this machine, from the nvidia-pytriton wheel (Python backend only).

The wheel carries NVIDIA's `tritonserver` binary and its Python backend. The backend's stub embeds the
system's libpython, so the server's venv is made from the system Python (Debian's /usr/bin/python3.11),
not from another build of the same version: with another build the model fails to load
("'_thread.RLock' object has no attribute '_recursion_count'"). pytriton needs numpy < 2, so the
server gets its own venv, apart from the project's. The tests and scripts/triton_serve.py use this.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's; pytriton 0.7.0 has stubs for Python 3.8 to 3.13
PACKAGES = ("nvidia-pytriton==0.7.0", "numpy<2", "onnxruntime>=1.18")
DEFAULT_VENV = Path.home() / ".cache" / "gradcam" / "triton-venv"


class TritonUnavailable(RuntimeError):
    """This machine cannot run the local server; the message says why."""


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen
    grpc_port: int
    http_port: int
    log: Path

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The server's venv, made from the system Python with PACKAGES (once; later calls reuse it)."""
    python = venv / "bin" / "python"
    if python.exists() and (venv / ".ready").exists():
        return venv
    if not SYSTEM_PYTHON.exists():
        raise TritonUnavailable(f"{SYSTEM_PYTHON} is missing: the Python backend's stub needs the system Python")
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise TritonUnavailable(f"{SYSTEM_PYTHON} -m venv failed (on Debian: apt install python3-venv): "
                                f"{made.stderr.strip()[-300:]}")  # fmt: skip
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PACKAGES], capture_output=True, text=True, check=False
    )
    if install.returncode != 0:
        raise TritonUnavailable(f"installing {', '.join(PACKAGES)} failed: {install.stderr.strip()[-400:]}")
    (venv / ".ready").write_text("ok\n")
    return venv


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise TritonUnavailable(f"{venv} has no site-packages")
    return found[0]


def prepare_binaries(venv: Path, work: Path) -> Path:
    """pytriton's tritonserver folder copied to `work`, with the stub for the venv's Python in its backend
    (what pytriton itself does before it starts the server)."""
    dist = _site_packages(venv) / "pytriton" / "tritonserver"
    target = work / "tritonserver"
    if not target.exists():
        shutil.copytree(dist, target, ignore=shutil.ignore_patterns("python_backend_stubs"))
        version = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise TritonUnavailable(f"pytriton has no Python-backend stub for Python {version}")
        shutil.copy(stub, target / "backends" / "python" / "triton_python_backend_stub")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    repo: Path, work: Path, venv: Path | None = None, timeout: float = 90.0, ports: tuple[int, int] | None = None
) -> Server:
    """tritonserver on loopback ports (free ones, or `ports` = (grpc, http): a restart on the same address)
    serving `repo`; returns once it says it is ready."""
    venv = ensure_venv(venv or DEFAULT_VENV)
    binaries = prepare_binaries(venv, work)
    site = _site_packages(venv)
    env = os.environ.copy()
    libs = site / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["PYTHONPATH"] = str(site)  # the stub's embedded Python: onnxruntime and numpy from the server's venv
    grpc_port, http_port = ports or (free_port(), free_port())
    metrics_port = free_port()
    log = work / "tritonserver.log"
    command = [
        str(binaries / "bin" / "tritonserver"), f"--model-repository={repo}",
        f"--backend-directory={binaries / 'backends'}", f"--cache-directory={binaries / 'caches'}",
        f"--grpc-port={grpc_port}", f"--http-port={http_port}", f"--metrics-port={metrics_port}",
        "--allow-metrics=false", "--grpc-address=127.0.0.1", "--http-address=127.0.0.1",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, grpc_port, http_port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TritonUnavailable(f"tritonserver exited ({process.returncode}): {_tail(log)}")
        if _ready(http_port):
            return server
        time.sleep(0.25)
    server.stop()
    raise TritonUnavailable(f"tritonserver was not ready after {timeout:.0f} s: {_tail(log)}")


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(lines[-6:]) or "no output"


if __name__ == "__main__":  # python -m tests.helpers.triton_server --prepare: the server's venv, before the tests
    if sys.argv[1:] != ["--prepare"]:
        sys.exit("usage: python -m tests.helpers.triton_server --prepare   (to serve graphs: scripts/triton_serve.py)")
    try:
        print(f"Triton server venv: {ensure_venv()}")
    except TritonUnavailable as exc:
        sys.exit(f"triton_server: {exc}")
