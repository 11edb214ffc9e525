"""Video encoders: one table of codecs per file suffix, tried in order, behind one small interface.

OpenCV's VP8 runs libvpx at its "good" deadline: about 33 ms a frame at 1280x480 on a Zen 3 core,
more than a 30 FPS loop can spare on 2 cores. PyAV (FFmpeg in its wheels) runs VP8 and H.264 at their
real-time settings (5-8 ms a frame there), and gives .mp4 files the H.264 that OpenCV's wheels lack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from realtime.quiet import quiet_opencv, quiet_stderr


@dataclass(frozen=True)
class Codec:
    """One way to write a suffix: `name` is what the user is told the file holds."""

    name: str  # "VP8", "H.264", "Motion JPEG", "MPEG-4 Part 2"
    backend: str  # "pyav" or "opencv"
    codec: str  # FFmpeg's encoder name (pyav) or a FOURCC (opencv)
    browser: bool  # whether browsers play it
    options: Mapping[str, str] = field(default_factory=dict)
    pixel_format: str = "yuv420p"  # pyav: what the encoder takes (MJPEG: full-range yuvj420p)


VP8_REALTIME = {"deadline": "realtime", "cpu-used": "16", "crf": "10", "b": "4M"}  # libvpx's live settings
H264_REALTIME = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23"}
H264 = (
    Codec("H.264", "pyav", "libx264", True, H264_REALTIME),
    Codec("H.264", "opencv", "avc1", True),
    Codec("MPEG-4 Part 2", "opencv", "mp4v", False),
)
CODECS: dict[str, tuple[Codec, ...]] = {
    ".webm": (Codec("VP8", "pyav", "libvpx", True, VP8_REALTIME), Codec("VP8", "opencv", "VP80", True)),
    ".mp4": H264,
    ".mkv": tuple(replace(c, browser=False) for c in H264),  # Matroska with H.264: VLC, not most browsers
    ".avi": (  # OpenCV's MJPEG spreads over every core; PyAV's runs on the encoder's one niced thread
        Codec("Motion JPEG", "pyav", "mjpeg", False, {"qmin": "2", "qmax": "5"}, "yuvj420p"),
        Codec("Motion JPEG", "opencv", "MJPG", False),
    ),
}


class Encoder(Protocol):
    codec: Codec

    def write(self, frame_bgr: np.ndarray) -> None: ...

    def close(self) -> None: ...


class EncoderError(RuntimeError):
    """No codec for this suffix could be opened, or one failed while writing."""


class OpenCVEncoder:
    def __init__(self, path: Path, codec: Codec, fps: float, size: tuple[int, int]) -> None:
        self.codec = codec
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec.codec), fps, size)
        if not self.writer.isOpened():
            self.writer.release()
            raise EncoderError(f"OpenCV cannot write {codec.codec}")

    def write(self, frame_bgr: np.ndarray) -> None:
        self.writer.write(frame_bgr)

    def close(self) -> None:
        self.writer.release()


class PyAVEncoder:
    """FFmpeg through PyAV; 4:2:0 video needs even sizes, so an odd row or column is cropped."""

    def __init__(self, path: Path, codec: Codec, fps: float, size: tuple[int, int]) -> None:
        import av  # optional: without it the table falls back to OpenCV

        self.codec = codec
        self.width, self.height = size[0] // 2 * 2, size[1] // 2 * 2
        self.container: Any = av.open(str(path), "w")
        try:
            rate = Fraction(fps if fps > 0 else 30.0).limit_denominator(1001)  # 5.5 FPS stays 5.5, not 6
            stream: Any = self.container.add_stream(codec.codec, rate=rate, options=dict(codec.options))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, codec.pixel_format
            stream.codec_context.thread_count = 1  # one core: the loop keeps the other
            stream.codec_context.open()
        except Exception as exc:
            self.container.close()
            raise EncoderError(f"PyAV cannot write {codec.codec}: {exc}") from exc
        self.stream, self.frame_type = stream, av.VideoFrame

    def write(self, frame_bgr: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame_bgr[: self.height, : self.width])
        for packet in self.stream.encode(self.frame_type.from_ndarray(frame, format="bgr24")):
            self.container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode():  # flush the frames the encoder still holds
                self.container.mux(packet)
        finally:
            self.container.close()


BACKENDS: dict[str, Callable[[Path, Codec, float, tuple[int, int]], Encoder]] = {
    "opencv": OpenCVEncoder,
    "pyav": PyAVEncoder,
}


def open_encoder(path: Path, fps: float, size: tuple[int, int]) -> Encoder:
    """The first codec in the suffix's table that opens here (PyAV missing: OpenCV's)."""
    with quiet_opencv(), quiet_stderr():  # FFmpeg's page per encoder it cannot open
        for codec in CODECS.get(path.suffix.lower(), H264):
            with contextlib.suppress(EncoderError, ImportError):
                return BACKENDS[codec.backend](path, codec, fps, size)
    raise EncoderError(f"no encoder here writes {path.suffix} at {size[0]}x{size[1]}; try a .avi path")


def codec_note(path: Path, codec: Codec) -> str | None:
    """One line when the file is not what a browser plays, naming the codec actually written."""
    if codec.browser:
        return None
    convert = f"ffmpeg -i {path.name} -c:v libx264 {path.stem}_h264.mp4"
    if path.suffix.lower() in (".mp4", ".mkv") and codec.name != "H.264":
        return (
            f"note: no H.264 encoder here (pip install av gives one), so {path.name} is {codec.name}, which "
            f"browsers do not play; record to .webm for a browser, or convert: {convert}"
        )
    return f"note: {path.name} is {codec.name}, which plays in VLC and ffplay, not in browsers; to share it: {convert}"
