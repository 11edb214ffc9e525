"""Text from a model file or a server is data: escapes and control characters never reach a terminal, a
caption or a log, long labels are cut once at load, and 20,000 labels load in linear time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from realtime import contract
from realtime.export.config import read_labels

HOSTILE = "cat\x1b[2J\x1b[H\x1b]0;owned\x07\r\nrm -rf ~\x00\u202eevil\x9b31m"


def test_labels_from_metadata_lose_escapes_and_controls_and_are_cut_once() -> None:
    labels = contract.parse_labels(json.dumps([HOSTILE, "x" * 10_000]), 2)
    assert all(ch.isprintable() for label in labels for ch in label), labels
    assert labels[0].startswith("cat") and "owned" not in labels[0] and "rm -rf ~" in labels[0]
    assert len(labels[1]) == contract.MAX_LABEL and labels[1].endswith("...")


def test_a_labels_file_is_cleaned_too_and_twenty_thousand_names_read_in_linear_time(tmp_path: Path) -> None:
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("\n".join(f"class {i}" for i in range(2_000)) + "\n" + HOSTILE.replace("\r\n", " ") + "\n")
    large.write_text("\n".join(f"class {i}" for i in range(40_000)) + "\n")
    t0 = time.perf_counter()
    names = read_labels(small)
    t1 = time.perf_counter()
    assert len(read_labels(large)) == 40_000
    t2 = time.perf_counter()
    assert all(ch.isprintable() for ch in names[-1])
    assert t2 - t1 < 20 * (t1 - t0) + 0.5  # 20x the names: about 20x the time, not 400x (it was quadratic)
