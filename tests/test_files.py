"""Atomic files: partial names, held locks, and what a full disk leaves behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers.commands import ROOT, file_size_limit


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


def test_an_image_the_disk_cannot_hold_keeps_the_previous_file(tmp_path: Path) -> None:
    """Snapshots, saved frames, gradcam-image and the figures share one writer: imwrite into a partial name,
    read back, then rename. With a file-size limit 10 bytes short of the PNG (as on a nearly full disk),
    imwrite still answers True, as its last buffered bytes fail silently; the read-back catches that."""
    import cv2

    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    limit = len(cv2.imencode(".png", noise)[1]) - 10
    png = tmp_path / "snap.png"
    png.write_bytes(b"the previous snapshot")
    script = (
        "import sys, numpy as np; from pathlib import Path; from realtime.files import write_image; "
        "noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8); "
        "print('image', write_image(Path(sys.argv[1]), noise))"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(png)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False, preexec_fn=file_size_limit(limit))  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == ["image False"], proc.stdout
    assert png.read_bytes() == b"the previous snapshot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.png"]  # no partial left behind
