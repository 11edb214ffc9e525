"""scripts/make_figures.py: a figure the disk cannot hold keeps the previous file, said in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.commands import ROOT, file_size_limit


def test_a_figure_the_disk_cannot_hold_keeps_the_previous_file(tmp_path: Path) -> None:
    """The GIF is written whole, read back, then moved into place: with the disk full after 20 kB (the GIF
    is a few hundred), the script says so in one line, exits 1, and the previous file is all there is."""
    gif = tmp_path / "stale_vs_warped.gif"
    gif.write_bytes(b"the previous figure")
    argv = [sys.executable, str(ROOT / "scripts" / "make_figures.py"), "--only", "stale_vs_warped"]
    proc = subprocess.run([*argv, "--output", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False, preexec_fn=file_size_limit(20_000))  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"make_figures: cannot write {gif}"), proc.stderr
    assert gif.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale_vs_warped.gif"]  # no partial left behind
