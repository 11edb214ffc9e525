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


def _planted(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A FIFO and a symlink at the names this project's temporary files had (name % pid): each a trap."""
    import os

    fifo, link = tmp_path / (name % os.getpid()), tmp_path / (name % (os.getpid() + 1))
    os.mkfifo(fifo)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    link.symlink_to(victim)
    return fifo, victim


def _finishes(work, seconds: float = 60.0) -> object:
    """`work()`'s answer, or a failure if it blocks (a FIFO opened for writing waits for a reader for ever)."""
    import threading

    answer: list[object] = []
    thread = threading.Thread(target=lambda: answer.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert answer, "it blocked on a planted file"
    return answer[0]


def test_temporary_names_cannot_be_planted_and_the_cleanup_opens_no_fifo(tmp_path: Path) -> None:
    """Temporary names are unpredictable and created with O_EXCL | O_NOFOLLOW; a FIFO or a symlink at the old,
    guessable names (or at any name the cleanup matches) is neither written through nor opened."""
    import cv2

    from realtime.files import create_new, partial_path, remove_stale, write_image

    fifo, victim = _planted(tmp_path, ".snap.%d.partial.png")
    assert partial_path(tmp_path / "snap.png") != partial_path(tmp_path / "snap.png")  # a new random part each time
    assert _finishes(lambda: write_image(tmp_path / "snap.png", np.zeros((8, 8, 3), np.uint8))) is True
    assert cv2.imread(str(tmp_path / "snap.png")) is not None and victim.read_text() == "someone else's file"
    assert _finishes(lambda: remove_stale(tmp_path)) == 0 and fifo.exists()  # left alone, never opened
    import pytest

    with pytest.raises(FileExistsError):
        create_new(fifo)


def test_a_recording_beside_planted_files_finishes_and_writes_through_nothing(tmp_path: Path) -> None:
    from realtime.outputs.recording import VideoRecorder
    from tests.helpers.video import count_frames

    _, victim = _planted(tmp_path, ".clip.%d.partial.webm")

    def record() -> int:
        recorder = VideoRecorder(tmp_path / "clip.webm", 15.0)
        for i in range(6):
            recorder.write(np.full((48, 64, 3), 40 * i, np.uint8))
        recorder.close()
        return count_frames(tmp_path / "clip.webm")

    assert _finishes(record) == 6 and victim.read_text() == "someone else's file"


def test_a_recording_whose_read_back_fails_for_lack_of_descriptors_is_kept(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Out of file descriptors at the end (a browser view's idle sockets took them): the check cannot open the
    file, which says nothing about the file. The complete recording is kept, and the log says it was not read
    back; it used to be deleted. The descriptors run out just as the read-back starts (after the encoder has
    closed its own file, which would free one)."""
    import os

    from realtime.outputs import recording
    from tests.helpers.video import count_frames

    hogs: list[int] = []
    real = recording.unreadable

    def exhausted_then_read_back(path: Path, frames: int) -> str | None:
        try:
            while True:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        return real(path, frames)

    monkeypatch.setattr(recording, "unreadable", exhausted_then_read_back)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, len(os.listdir("/proc/self/fd")) + 64), hard))
    out = tmp_path / "talk.webm"
    recorder = recording.VideoRecorder(out, 15.0, log=lambda line: print(line, file=sys.stderr))
    for i in range(5):
        recorder.write(np.full((48, 64, 3), 50 * i, np.uint8))
    try:
        recorder.close()
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert hogs and count_frames(out) == 5
    assert "kept without reading it back" in capsys.readouterr().err
