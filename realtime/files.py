"""Files that appear complete or not at all: write under a partial name in the same folder, then rename.

A recording, a snapshot or a saved frame is written as `.NAME.PID-RANDOM.partial.EXT`
(the extension kept, so OpenCV picks the right container; the random part so that nobody sharing
the folder can plant a FIFO or a symlink at the name in advance: it is created with
O_CREAT | O_EXCL | O_NOFOLLOW, as a new regular file of ours) and moved into place
by os.replace once it is complete, which is atomic on one filesystem. A kill
leaves at most a partial file; the next run in that folder removes the ones
whose process is gone. A process id says nothing across PID namespaces (a
container sharing the folder), so a writer also holds an flock on its partial
file, and a partial that someone holds is never removed, whoever's it looks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

PARTIAL = ".partial"


def partial_path(path: Path, marker: str = PARTIAL, suffix: str | None = None) -> Path:
    """A new, unpredictable temporary name beside `path` (nothing is created)."""
    ending = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(6)}{marker}{ending}")


def create_new(path: Path) -> int:
    """Create `path` as a new regular file, never through anything already there (a planted FIFO, a
    symlink): O_CREAT | O_EXCL | O_NOFOLLOW. Returns its descriptor, open for writing."""
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)


def new_partial(path: Path) -> Path:
    """partial_path, created empty (closed again): ready for a writer that opens it by name."""
    partial = partial_path(path)
    os.close(create_new(partial))
    return partial


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def hold(path: Path) -> int:
    """Create `path` (a partial file) and hold an exclusive flock on it until `release`; the writer that
    fills it (OpenCV) may open it again by name."""
    fd = create_new(path)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _held(path: Path) -> bool:
    """Someone (in any process namespace) holds an flock on `path`. Never opens anything but a regular file
    (opening a FIFO planted there would block for ever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def remove_stale(folder: Path, marker: str = PARTIAL) -> int:
    """Delete the temporary files of processes that are gone (killed mid-write) from `folder`: not ours,
    no such process here, and no flock on them (a writer in another PID namespace holds one)."""
    removed = 0
    for path in folder.glob(f".*{marker}*") if folder.is_dir() else ():
        try:
            kind = path.lstat().st_mode
        except OSError:
            continue
        if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):  # a FIFO, a symlink, a socket: not ours, left alone
            continue
        pid = path.name.split(marker)[0].rsplit(".", 1)[-1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)) and not _held(path):
            if path.is_dir():  # a large graph's folder (the graph and its external data)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


def discard(path: Path) -> None:
    """Remove a partial file if it is there (its folder may not even exist)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()


def finish(partial: Path, path: Path) -> None:
    """Move a complete partial file into place."""
    os.replace(partial, path)


def write_image(path: Path, frame: np.ndarray) -> bool:
    """cv2.imwrite through a partial name, read back before the rename (a full disk can leave a file that
    imwrite called written); False, the old file kept and nothing left behind, when it does not decode."""
    try:
        partial = new_partial(path)
    except OSError:
        return False
    try:
        if not cv2.imwrite(str(partial), frame) or partial.stat().st_size == 0:
            return False
        back = cv2.imread(str(partial), cv2.IMREAD_UNCHANGED)
        if back is None or back.shape[:2] != frame.shape[:2]:
            return False
        finish(partial, path)
        return True
    except (cv2.error, OSError):  # the folder went away, the disk is full
        return False
    finally:
        discard(partial)


@contextlib.contextmanager
def folder_for(path: Path) -> Iterator[None]:
    """Make `path`'s folder for the block; when the block fails, the folders it made are removed again
    (while empty), so a failed export or recording leaves no empty models/ behind."""
    made: list[Path] = []
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


class OutputPathError(ValueError):
    """An output path that cannot be written; said before any slow work starts."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv")


def check_output_file(path: Path, flag: str, suffixes: tuple[str, ...]) -> None:
    """`path` has a known suffix and its folder exists or can be made, and is writable."""
    if path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{flag} {path}: the name must end in {', '.join(suffixes)}")
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: that is a folder; give a file name")
    check_output_folder(path.parent if str(path.parent) else Path("."), flag, shown=path)


def check_output_folder(folder: Path, flag: str, shown: Path | None = None) -> None:
    """`folder` exists or can be made (its nearest existing parent is a writable folder)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{flag} {shown or folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {shown or folder}: {probe} is not writable; choose another place")
    try:  # access() says yes as root, even on /proc: only creating a file there tells
        fd, name = tempfile.mkstemp(prefix=".gradcam-probe.", dir=probe)
        os.close(fd)
        trial = Path(name)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputPathError(
            f"{flag} {shown or folder}: cannot create a file in {probe} ({reason}); choose another place"
        ) from None
    discard(trial)
