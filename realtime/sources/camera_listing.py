"""gradcam-live --list-cameras: the cameras, the index OpenCV opens each by, and (Linux) their modes.

Well-kept libraries do the enumeration where installed (`pip install "gradcam-realtime[camera]"`):
cv2-enumerate-cameras lists OpenCV's indices with names on Linux, Windows and macOS, and linuxpy reads
V4L2's modes. Without them, Linux's sysfs still gives the names, without the modes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from realtime.sources.camera_mode import CameraMode, fourcc_of

SYSFS = Path("/sys/class/video4linux")


@dataclass(frozen=True)
class CameraInfo:
    index: int  # what --source takes
    name: str
    path: str | None  # /dev/videoN on Linux
    modes: tuple[CameraMode, ...] = ()


def _enumerated() -> list[tuple[int, str, str | None]]:
    """(index, name, path) from cv2-enumerate-cameras; ImportError without it."""
    import cv2
    from cv2_enumerate_cameras import enumerate_cameras

    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return [(int(c.index), str(c.name), c.path) for c in enumerate_cameras(backend)]


def _sysfs() -> list[tuple[int, str, str | None]]:
    """(index, name, path) from Linux's sysfs: every video node, capture or not."""
    found: list[tuple[int, str, str | None]] = []
    for node in sorted(SYSFS.glob("video*")) if SYSFS.is_dir() else []:
        try:
            name = (node / "name").read_text().strip()
            if (node / "index").read_text().strip() not in ("", "0"):
                continue  # a camera's second node (UVC metadata), not one to capture from
        except OSError:
            continue
        found.append((int(node.name[len("video") :]), name, f"/dev/{node.name}"))
    return found


def _v4l2_modes(path: str) -> tuple[CameraMode, ...]:
    """The modes V4L2 lists for a device, from linuxpy; ImportError without it, () when it cannot ask."""
    from linuxpy.video.device import Device

    try:
        with Device(path) as device:
            types = device.info.frame_types
    except OSError:
        return ()
    return tuple(
        CameraMode((int(t.width), int(t.height)), float(t.max_fps), fourcc_of(int(t.pixel_format))) for t in types
    )


def list_cameras(
    enumerate_: Callable[[], list[tuple[int, str, str | None]]] = _enumerated,
    modes: Callable[[str], tuple[CameraMode, ...]] = _v4l2_modes,
) -> tuple[list[CameraInfo], str | None]:
    """The cameras here, and a note on what is missing (a library); the callables are stubbed in tests."""
    note = None
    try:
        found = enumerate_()
    except ImportError:
        found, note = _sysfs(), 'names from sysfs; pip install "gradcam-realtime[camera]" lists them everywhere'
    cameras = []
    for index, name, path in found:
        listed: tuple[CameraMode, ...] = ()
        if path is not None and path.startswith("/dev/video"):  # V4L2's modes: Linux only
            try:
                listed = modes(path)
            except ImportError:
                note = 'modes need linuxpy: pip install "gradcam-realtime[camera]"'
        cameras.append(CameraInfo(index, name, path, listed))
    return cameras, note


def describe(cameras: Sequence[CameraInfo], note: str | None) -> list[str]:
    """The lines --list-cameras prints."""
    if not cameras:
        return ["no cameras found here: try --source FILE, a stream URL, or --demo" + (f" ({note})" if note else "")]
    lines = []
    for camera in cameras:
        where = f" ({camera.path})" if camera.path else ""
        lines.append(f"--source {camera.index}: {camera.name}{where}")
        for mode in sorted(set(camera.modes), key=lambda m: (m.fourcc or "", m.size or (0, 0), m.fps or 0.0)):
            lines.append(f"    {mode.describe()}")
    return lines + ([f"({note})"] if note else [])
