"""Hardening, round 2: inputs never outputs, arguments checked first, the control API fuzzed (issue: Hardening 2)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from realtime import cam, contract
from realtime.serve.hub import ControlError, parse_control
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command line run in this process (no interpreter start-up): its exit code and stderr."""
    import contextlib
    import importlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = importlib.import_module(module).main(list(args))
        except SystemExit as exc:  # argparse's refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess([module, *args], code, "", err.getvalue())


def _one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gradcam-")]
    assert len(lines) == 1, proc.stderr  # argparse's usage aside, one line says what to do
    return lines[0]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    from tests.test_real_world import _tiny_classifier

    return _tiny_classifier(tmp_path_factory.mktemp("tiny") / "tiny.onnx", ir_version=9)


def test_an_export_onto_its_own_input_is_refused_and_the_input_kept(tiny_onnx: Path) -> None:
    before = tiny_onnx.read_bytes()
    message = _one_line_refusal(_cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(tiny_onnx)))
    assert "input model" in message and tiny_onnx.read_bytes() == before
    alias = tiny_onnx.parent / "." / tiny_onnx.name  # the same file by another spelling
    assert "input model" in _one_line_refusal(
        _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(alias))
    )


def test_an_overlay_onto_its_own_photo_is_refused_and_the_photo_kept(tmp_path: Path) -> None:
    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 32, 3), 120, np.uint8))
    before = photo.read_bytes()
    message = _one_line_refusal(_cli("realtime.image_cli", str(photo), "--output", str(photo)))
    assert "input image" in message and photo.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"cat\n\xff\xfedog\n", "not UTF-8"), (b"a\nb\na\nc\nd\n", "more than once")],
    ids=["not-utf8", "duplicates"],
)
def test_a_bad_labels_file_is_one_line(tiny_onnx: Path, tmp_path: Path, content: bytes, expected: str) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    out = tmp_path / "g.onnx"
    proc = _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--labels", str(labels), "--output", str(out),
                "--preprocess", "raw")  # fmt: skip
    assert expected in _one_line_refusal(proc) and not out.exists()


def test_a_huge_input_size_and_options_without_their_partner_are_refused_first(tiny_onnx: Path) -> None:
    start = time.perf_counter()
    assert "at most" in _one_line_refusal(_cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--input-size",
                                               "90000x90000"))  # fmt: skip
    assert "--int8" in _one_line_refusal(
        _cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--calibration", "random")
    )
    assert "--serve" in _one_line_refusal(_cli("realtime.cli", "--demo", "--token", "secret", "--no-window"))
    assert "1 to 16" in _one_line_refusal(_cli("realtime.cli", "--demo", "--top-k", str(contract.MAX_TARGETS + 1)))
    assert "cores" in _one_line_refusal(_cli("realtime.cli", "--demo", "--threads", "100000"))
    assert time.perf_counter() - start < 60  # no model was loaded for any of them


def test_the_api_checks_its_arguments_and_its_results_are_frozen() -> None:
    from realtime import GradCam
    from realtime.demo.models import demo_model_paths

    gc = GradCam(demo_model_paths()["fair"], providers="cpu", warmup=0)
    frame = np.full((224, 224, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="at least one frame"):
        gc.batch([])
    for bad in (0, -1, True, 1.5, contract.MAX_TARGETS + 1):
        with pytest.raises(ValueError, match="top_k"):
            gc(frame, top_k=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        GradCam(demo_model_paths()["fair"], providers="cpu", threads=10**6)
    explained = gc(frame, top_k=2)
    assert explained.maps.shape[0] == 2 and not explained.maps.flags.writeable
    with pytest.raises(ValueError):
        explained.maps[0, 0, 0] = 1.0


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 2**31, 10**400, -(10**30), rng.randrange(-100, 100)])
    if kind == 2:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), rng.random()])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(0, 12)))
    if kind == 4:
        return rng.choice([*cam.METHODS, "auto", "heat", "tint", "snapshot", "", "x" * 5000])
    if kind == 5:
        return rng.randrange(0, 3)
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(_random_value(rng, depth + 1))[:20]: _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _random_body(rng: random.Random) -> object:
    fields = ["method", "class", "alpha", "smooth", "frozen", "style", "layer", "action", "other"]
    if rng.random() < 0.1:
        return _random_value(rng)
    return {rng.choice(fields): _random_value(rng) for _ in range(rng.randrange(0, 4))}


def test_a_thousand_random_bodies_are_each_accepted_or_refused_with_a_message() -> None:
    rng = random.Random(7)
    labels = ["elephant", "penguin", "7", "elephant"]  # numeric and repeated labels too
    refused = 0
    for _ in range(1000):
        body = _random_body(rng)
        try:
            parse_control(body, labels, frozenset({contract.GRADIENTS}), layers=2)
        except ControlError as exc:
            refused += 1
            assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 400
    assert refused > 500  # most random bodies are wrong; none raised anything but a ControlError


@pytest.fixture(scope="module")
def live():
    server = LiveServer()
    yield server
    server.close()


def test_random_bodies_and_header_bytes_never_get_a_500_and_the_loop_goes_on(live, caplog) -> None:
    rng = random.Random(11)
    before = live.hub.snapshot.sequence
    for _ in range(200):
        body = json.dumps(_random_body(rng), allow_nan=True).encode()
        request = urllib.request.Request(
            live.url + "api/control", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as exc:
            assert exc.code in (400, 413, 415), exc.code
    for _ in range(200):
        value = (
            bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 40))).replace(b"\r", b"").replace(b"\n", b"")
        )
        name = rng.choice([b"Cookie", b"Authorization", b"X-Token", b"Host", b"Content-Type", b"Origin"])
        raw = (
            b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n" + name + b": " + value + b"\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", live.server.port), timeout=5) as conn:
            conn.sendall(raw)
            reply = conn.recv(64)
        assert not reply.startswith(b"HTTP/1.1 500"), (name, value, reply)
    time.sleep(0.5)
    assert live.hub.snapshot.sequence > before  # the loop kept running
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_token_cookie_goes_only_to_a_client_that_presented_the_token() -> None:
    """A local client is let in without a token, but never handed one; the page drops ?token= from the address."""
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from realtime.serve import guard

    policy = guard.Policy(frozenset({"127.0.0.1"}), token="s3cret")
    middleware = guard.middleware(policy)

    async def page(request):
        from aiohttp import web

        return web.Response(text="page")

    def cookie(query: str, headers: dict[str, str] | None = None) -> str | None:
        request = make_mocked_request("GET", f"/{query}", headers={"Host": "127.0.0.1", **(headers or {})})
        response = asyncio.run(middleware(request, page))
        morsel = response.cookies.get(guard.TOKEN_COOKIE)
        return None if morsel is None else morsel.value

    assert cookie("?token=wrong") is None  # from 127.0.0.1: let in, but not told the real token
    assert cookie("") is None
    assert cookie("?token=s3cret") == "s3cret"
    assert guard.token_matches("caf\udce9", "s3cret") is False  # undecodable header bytes: no match, no error
    page_text = (ROOT / "realtime" / "serve" / "static" / "index.html").read_text()
    assert "history.replaceState" in page_text


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:8080/"), ("::1", "http://[::1]:8080/"), ("::", "http://[::1]:8080/"),
     ("127.0.0.1", "http://127.0.0.1:8080/"), ("10.0.0.2", "http://10.0.0.2:8080/")],
)  # fmt: skip
def test_the_printed_address_opens_in_a_browser(host: str, url: str) -> None:
    from realtime.serve.app import page_url

    assert page_url(host, 8080) == url


def _file_size_limit(limit: int):  # the disk "fills" after `limit` bytes of any file this process writes
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("suffix", [".avi", ".webm"])
def test_a_recording_the_disk_cannot_hold_keeps_the_previous_file_and_fails(tmp_path: Path, suffix: str) -> None:
    """Fault injection without root: a file-size limit on the recording process (RLIMIT_FSIZE, SIGXFSZ
    ignored), so OpenCV's writes fail past 64 kB as on a full disk."""
    out = tmp_path / f"talk{suffix}"
    out.write_bytes(b"the previous recording")
    proc = subprocess.run(
        [sys.executable, "-m", "realtime.cli", "--demo", "--max-frames", "40", "--record", str(out), "--providers",
         "cpu", "--no-window"], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        preexec_fn=_file_size_limit(64 * 1024),
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    message = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert message and "previous" in message[-1] and "video written" not in proc.stderr, proc.stderr
    assert out.read_bytes() == b"the previous recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no partial file left behind


def test_a_partial_file_held_by_a_process_this_one_cannot_see_is_not_removed(tmp_path: Path) -> None:
    """A writer in another PID namespace: its partial carries a process id that means nothing here, but it
    holds an flock on the file, so the cleanup leaves it; once released (the writer gone), it is removed."""
    from realtime.files import hold, release, remove_stale

    partial = tmp_path / ".talk.999999999.partial.avi"  # no such process here
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(partial)],
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert remove_stale(tmp_path) == 0 and partial.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale(tmp_path) == 1 and not partial.exists()
    mine = tmp_path / ".other.999999998.partial.avi"
    fd = hold(mine)  # this process's own lock counts too
    assert remove_stale(tmp_path) == 0
    release(fd)


def test_an_export_the_disk_cannot_hold_keeps_the_previous_graph_in_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.onnx"
    out.write_bytes(b"the previous graph")
    proc = subprocess.run(
        [sys.executable, "-m", "realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(out), "--preprocess",
         "raw", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        preexec_fn=_file_size_limit(2048),
    )  # fmt: skip
    message = _one_line_refusal(proc)
    assert "cannot write" in message and "previous g.onnx is kept" in message, message
    assert out.read_bytes() == b"the previous graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_a_folder_with_no_readable_image_ends_non_zero(tmp_path: Path, capsys) -> None:
    from realtime import cli
    from realtime.demo.models import demo_model_paths

    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    code = cli.main(["--model", str(demo_model_paths()["fair"]), "--source", str(folder), "--no-window",
                     "--providers", "cpu", "--record", str(tmp_path / "out.avi")])  # fmt: skip
    assert code == 1 and "no frame was shown" in capsys.readouterr().err
    assert not (tmp_path / "out.avi").exists()


def test_a_graph_whose_classes_are_out_of_range_is_a_contract_error(monkeypatch) -> None:
    from realtime.contract import ContractError
    from realtime.demo.models import demo_model_paths
    from realtime.engine import Engine, EngineOptions

    engine = Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    call = engine._call

    def broken(*args, **kwargs):
        values = call(*args, **kwargs)
        return {**values, contract.OUT_CLASSES: values[contract.OUT_CLASSES] + 1000}

    monkeypatch.setattr(engine, "_call", broken)
    with pytest.raises(ContractError, match=r"outside 0\.\.1; re-export"):
        engine.run(np.zeros((1, 224, 224, 3), np.uint8), [[-1]])


def test_a_class_picked_by_id_stays_that_id_and_other_models_match_it_by_name() -> None:
    """Numeric and repeated labels: id 2 of the first model ("7") is not id 7, and not the first "penguin"."""
    from realtime.controls import Controls, class_id_in
    from realtime.serve.hub import parse_control

    first = ["elephant", "penguin", "7", "penguin"]
    changes = parse_control({"class": 3}, first, frozenset())
    controls = Controls(**{k: v for k, v in changes.items() if k != "rank"})
    assert class_id_in(controls, first, first=True) == 3  # the id clicked, not the first "penguin"
    assert class_id_in(controls, ["penguin", "elephant"], first=False) == 0  # by name in another model
    numeric = Controls(**{k: v for k, v in parse_control({"class": 2}, first, frozenset()).items() if k != "rank"})
    assert class_id_in(numeric, first) == 2
    assert class_id_in(numeric, [f"c{i}" for i in range(10)], first=False) is None  # no class named "7" there


def test_gradcam_eval_checks_its_arguments_and_its_output_first(tmp_path: Path) -> None:
    start = time.perf_counter()
    assert "1 to 10000" in _one_line_refusal(_cli("realtime.demo.evaluate", "--scenes", "0"))
    assert "2 to 256" in _one_line_refusal(_cli("realtime.demo.evaluate", "--steps", "-3"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = _one_line_refusal(_cli("realtime.demo.evaluate", "--scenes", "1", "--output", str(blocker / "eval.md")))
    assert "not a folder" in message and time.perf_counter() - start < 30  # refused before any evaluation


def test_a_layout_that_contradicts_the_model_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    message = _one_line_refusal(_cli("realtime.export.cli", "--onnx", str(tiny_onnx), "--layout", "NHWC", "--output",
                                     str(tmp_path / "g.onnx")))  # fmt: skip
    assert "contradicts" in message and "NCHW" in message


def test_save_frames_that_cannot_be_written_stop_with_a_line_and_the_show_goes_on(tmp_path: Path, monkeypatch) -> None:
    from realtime import files, outputs
    from realtime.outputs import FrameSaver

    said: list[str] = []
    saver = FrameSaver(tmp_path / "frames", every=1, log=said.append)
    monkeypatch.setattr(outputs, "write_image", lambda path, image: False)  # as a full disk answers
    frame = type("Frame", (), {"image": np.zeros((8, 8, 3), np.uint8)})()
    shown = type("Shown", (), {"frames": (frame,)})()
    saver.write(shown)  # type: ignore[arg-type]
    saver.write(shown)  # type: ignore[arg-type]
    assert saver.saved == 0 and saver.failure and len(said) == 1 and "stopped after 0 frames" in said[0]
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert files.write_image(blocker / "x.png", np.zeros((8, 8, 3), np.uint8)) is False  # no traceback


def test_a_window_without_opencv_gui_names_the_cause_and_the_fix(monkeypatch) -> None:
    import cv2

    from realtime import outputs

    def no_gui(*args: object) -> None:
        raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or Cocoa support")

    monkeypatch.setattr(outputs, "has_display", lambda: True)
    monkeypatch.setattr(outputs.cv2, "namedWindow", no_gui)
    monkeypatch.setattr(outputs, "opencv_has_gui", lambda: False)
    monkeypatch.setattr(outputs, "headless_installed", lambda: True)
    with pytest.raises(outputs.SinkError, match=r"headless is installed\).*--force-reinstall opencv-python"):
        outputs.Window()
    monkeypatch.setattr(outputs, "headless_installed", lambda: False)
    with pytest.raises(outputs.SinkError, match=r"no GUI \(built without one\)"):
        outputs.Window()


def test_images_and_figures_the_disk_cannot_hold_keep_the_previous_file(tmp_path: Path) -> None:
    """Snapshots, saved frames, gradcam-image and the README figures share one writer: imwrite into a partial
    name, read back, then rename. With a file-size limit 10 bytes short of the PNG (as on a nearly full disk),
    imwrite still answers True, as its last buffered bytes fail silently; the read-back catches that."""
    import cv2

    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    limit = len(cv2.imencode(".png", noise)[1]) - 10
    png, gif = tmp_path / "snap.png", tmp_path / "clip.gif"
    png.write_bytes(b"the previous snapshot")
    gif.write_bytes(b"the previous figure")
    script = (
        "import sys, numpy as np; from pathlib import Path; from realtime.files import write_image; "
        "from scripts.make_figures import FigureError, write_gif; "
        "noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8); "
        "print('image', write_image(Path(sys.argv[1]), noise)); "
        "exec('try:\\n write_gif([noise] * 4, Path(sys.argv[2]), 256, 10)\\nexcept FigureError as e:\\n print(e)')"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(png), str(gif)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False, preexec_fn=_file_size_limit(limit))  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "image False" and lines[1].startswith(f"cannot write {gif}"), proc.stdout
    assert png.read_bytes() == b"the previous snapshot" and gif.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "snap.png"]  # no partial left behind
