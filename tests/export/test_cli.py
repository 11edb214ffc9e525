"""gradcam-export's command line: refusals before any work, and nothing lost on failure."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realtime import contract
from tests.helpers.commands import ROOT, file_size_limit, one_line_refusal, run_in_process


def test_an_export_onto_its_own_input_is_refused_and_the_input_kept(tiny_onnx: Path) -> None:
    before = tiny_onnx.read_bytes()
    message = one_line_refusal(
        run_in_process("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(tiny_onnx))
    )
    assert "input model" in message and tiny_onnx.read_bytes() == before
    alias = tiny_onnx.parent / "." / tiny_onnx.name  # the same file by another spelling
    assert "input model" in one_line_refusal(
        run_in_process("realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(alias))
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"cat\n\xff\xfedog\n", "not UTF-8"), (b"a\nb\na\nc\nd\n", "more than once")],
    ids=["not-utf8", "duplicates"],
)
def test_a_bad_labels_file_is_one_line(tiny_onnx: Path, tmp_path: Path, content: bytes, expected: str) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    out = tmp_path / "g.onnx"
    proc = run_in_process(
        "realtime.export.cli",
        "--onnx",
        str(tiny_onnx),
        "--labels",
        str(labels),
        "--output",
        str(out),
        "--preprocess",
        "raw",
    )
    assert expected in one_line_refusal(proc) and not out.exists()


def test_a_huge_input_size_and_options_without_their_partner_are_refused_first(tiny_onnx: Path) -> None:
    start = time.perf_counter()
    assert "at most" in one_line_refusal(run_in_process("realtime.export.cli", "--onnx", str(tiny_onnx), "--input-size",
                                               "90000x90000"))  # fmt: skip
    assert "--int8" in one_line_refusal(
        run_in_process("realtime.export.cli", "--onnx", str(tiny_onnx), "--calibration", "random")
    )
    assert "--serve" in one_line_refusal(
        run_in_process("realtime.live.cli", "--demo", "--token", "secret", "--no-window")
    )
    assert "1 to 16" in one_line_refusal(
        run_in_process("realtime.live.cli", "--demo", "--top-k", str(contract.MAX_TARGETS + 1))
    )
    assert "cores" in one_line_refusal(run_in_process("realtime.live.cli", "--demo", "--threads", "100000"))
    assert time.perf_counter() - start < 60  # no model was loaded for any of them


def test_an_export_the_disk_cannot_hold_keeps_the_previous_graph_in_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.onnx"
    out.write_bytes(b"the previous graph")
    proc = subprocess.run(
        [sys.executable, "-m", "realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(out), "--preprocess",
         "raw", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        preexec_fn=file_size_limit(2048),
    )  # fmt: skip
    message = one_line_refusal(proc)
    assert "cannot write" in message and "previous g.onnx is kept" in message, message
    assert out.read_bytes() == b"the previous graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_a_layout_that_contradicts_the_model_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    message = one_line_refusal(
        run_in_process(
            "realtime.export.cli", "--onnx", str(tiny_onnx), "--layout", "NHWC", "--output", str(tmp_path / "g.onnx")
        )
    )
    assert "contradicts" in message and "NCHW" in message


def _steps(stderr: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in re.finditer(r"^\[(\d+)/(\d+)\]", stderr, re.MULTILINE)]


@pytest.mark.parametrize("options", [["--gradients", "pooled"], ["--gradients", "none"], ["--no-check"]])
def test_export_step_counters_count_the_steps_that_run(tiny_onnx: Path, tmp_path: Path, options: list[str]) -> None:
    proc = run_in_process(
        "realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(tmp_path / "g.onnx"), *options
    )
    steps = _steps(proc.stderr)
    assert proc.returncode == 0 and steps, proc.stderr
    assert [k for k, _ in steps] == list(range(1, len(steps) + 1)) and {n for _, n in steps} == {len(steps)}


def test_a_failed_export_leaves_no_empty_folder(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    from realtime.export import pipeline
    from realtime.export.checks import selfcheck

    def fails(*args: object, **kwargs: object) -> None:
        raise selfcheck.SelfCheckError("the backward is off")

    monkeypatch.setattr(pipeline.selfcheck, "check_layers", fails)
    for output in (tmp_path / "models" / "g.onnx", tmp_path / "deep" / "er" / "q.onnx"):
        int8 = ["--int8"] if "deep" in output.parts else []
        proc = run_in_process(
            "realtime.export.cli", "--onnx", str(tiny_onnx), "--output", str(output), "--quiet", *int8
        )
        assert proc.returncode == 3 and "nothing written" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
