"""Where frames come from: cameras, video files, URLs, GStreamer pipelines and image folders.

`open_source` turns a --source value into one; the reader in sources/reader.py runs it on a thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from realtime.quiet import quiet_opencv
from realtime.sources.camera_mode import CameraMode, apply_mode, mismatch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source cannot be opened; the message says what to try instead."""


class FrameSource(Protocol):
    """Something that yields frames. read() returns None at the end or on a dropout."""

    name: str
    live: bool

    @property
    def fps(self) -> float: ...  # the source's own frame rate, 0 when it has none

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def open_capture(spec: int | str, backend: int) -> cv2.VideoCapture:
    """cv2.VideoCapture, in one place (the tests put a fake driver here)."""
    return cv2.VideoCapture(spec, backend)


class VideoCaptureSource:
    """A camera index, a video file, a URL or a GStreamer pipeline, through cv2.VideoCapture."""

    def __init__(self, spec: int | str, live: bool, mode: CameraMode | None = None) -> None:
        self.spec, self.live, self.mode = spec, live, mode or CameraMode()
        self.name = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self.notice: str | None = None  # what the camera gave, when it is not what was asked
        self._cap: cv2.VideoCapture | None = None
        self.frames_read = 0
        self.frame_count = 0  # what a file's header promises (0: unknown, or not a file)

    def open(self) -> None:
        with quiet_opencv():  # a page per backend it tries on a missing camera
            if isinstance(self.spec, str) and ("!" in self.spec):
                if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
                    raise SourceError(
                        f"{self.spec!r} is a GStreamer pipeline, and this OpenCV has no GStreamer (pip's "
                        "opencv-python wheels are built without it): use the system's OpenCV (docs/jetson.md)"
                    )
                cap = open_capture(self.spec, cv2.CAP_GSTREAMER)
            elif self.is_v4l2_path:
                cap = open_capture(self.spec, cv2.CAP_V4L2)
            else:
                cap = open_capture(self.spec, cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.spec, int):
                raise SourceError(f"no camera at index {self.spec}: try --source FILE or --demo")
            if self.is_v4l2_path:
                raise SourceError(f"cannot open camera {self.spec} (busy, or not a capture device); try --list-cameras")
            if not self.live:
                raise SourceError(
                    f"cannot open {self.spec}: not a video OpenCV can decode here; convert it "
                    "(ffmpeg -i IN -c:v libx264 OUT.mp4) or pass a folder of images"
                )
            raise SourceError(f"cannot open {self.spec}: check the address, or try --source FILE or --demo")
        self._cap = cap
        if self.mode.asked():
            self.notice = mismatch(self.name, self.mode, apply_mode(cap, self.mode))
        if not self.live:
            self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    @property
    def is_v4l2_path(self) -> bool:
        return isinstance(self.spec, str) and self.spec.startswith("/dev/video")

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if ok:
            self.frames_read += 1
        return frame if ok else None

    def end_note(self) -> str:
        """Why a file ended early, if it did (its header promised more frames than decoded)."""
        if self.live or not self.frame_count or self.frames_read >= self.frame_count - 1:
            return ""
        return f"; the file stopped decoding after {self.frames_read} of {self.frame_count} frames (truncated?)"

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0


class FolderSource:
    """The images of a folder in name order; unreadable files are skipped."""

    live = False
    fps = 0.0  # no natural rate

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = str(folder)
        self._files: list[Path] = []
        self._index = 0
        self.skipped: list[Path] = []

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")
        self._index = 0

    def read(self) -> np.ndarray | None:
        while self._index < len(self._files):
            path = self._files[self._index]
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None:
                return image
            self.skipped.append(path)
        return None

    def end_note(self) -> str:
        if not self.skipped:
            return ""
        names = ", ".join(p.name for p in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
        return f"; skipped {len(self.skipped)} unreadable file(s): {names}"

    def close(self) -> None:
        self._files = []


def open_source(spec: str, mode: CameraMode | None = None) -> FrameSource:
    """A source from a --source value: camera index or /dev/videoN, folder, video file, URL or GStreamer
    pipeline; `mode` (--camera-size, --camera-fps, --fourcc) goes to cameras."""
    if spec.isdigit():
        return VideoCaptureSource(int(spec), live=True, mode=mode)
    if spec.startswith("/dev/video"):  # V4L2 by path: a character device, not a file
        if not Path(spec).exists():
            raise SourceError(f"--source {spec}: no such camera; gradcam-live --list-cameras shows the cameras here")
        return VideoCaptureSource(spec, live=True, mode=mode)
    if "://" in spec or "!" in spec:
        return VideoCaptureSource(spec, live=True)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return VideoCaptureSource(str(path), live=False)
    raise SourceError(f"--source {spec}: no such file, folder or camera index; try --source FILE or --demo")
