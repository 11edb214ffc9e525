"""How big the window opens: about 80% of the screen's smaller side, the picture's aspect kept.

OpenCV opens a window at the picture's own size (a 640x480 frame and its caption: a stamp on a 1080p
projector). The screen's size comes from X11 itself (libX11 through ctypes, no extra package), else from
Tk where it is installed; where neither answers, the window keeps OpenCV's size and `--window-size` says.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

SHARE = 0.8  # of the screen's smaller side
MAX_WIDTH_SHARE = 0.95  # a tall picture on a narrow screen: never wider than this share of the width


class WindowSizeError(ValueError):
    """--window-size that is not WxH in pixels."""


def parse_window_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not (64 <= int(width) <= 16384) or not (
        64 <= int(height) <= 16384
    ):
        raise WindowSizeError(f"--window-size {text!r}: write WIDTHxHEIGHT in pixels, e.g. 1280x720")
    return int(width), int(height)


def screen_size() -> tuple[int, int] | None:
    """(width, height) of the screen the window opens on, or None when nothing says."""
    return _x11_size() or _tk_size()


def _x11_size() -> tuple[int, int] | None:
    if not os.environ.get("DISPLAY"):
        return None
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    try:
        x11 = ctypes.CDLL(name)
    except OSError:
        return None
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    for function in (x11.XDefaultScreen, x11.XDisplayWidth, x11.XDisplayHeight):
        function.restype = ctypes.c_int
    x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
    x11.XDisplayWidth.argtypes = x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        return None
    try:
        screen = x11.XDefaultScreen(display)
        return int(x11.XDisplayWidth(display, screen)), int(x11.XDisplayHeight(display, screen))
    finally:
        x11.XCloseDisplay(display)


def _tk_size() -> tuple[int, int] | None:
    with contextlib.suppress(Exception):  # no tkinter, no display, a Tk that cannot start: nothing says
        import tkinter

        root = tkinter.Tk()
        root.withdraw()
        try:
            return int(root.winfo_screenwidth()), int(root.winfo_screenheight())
        finally:
            root.destroy()
    return None


def window_size(picture: tuple[int, int], screen: tuple[int, int] | None) -> tuple[int, int] | None:
    """(width, height) for a picture of (height, width) on `screen` (width, height): SHARE of the screen's
    smaller side across the picture's matching side, the aspect kept, never wider than MAX_WIDTH_SHARE of it."""
    if screen is None:
        return None
    height, width = picture
    screen_w, screen_h = screen
    target_h = SHARE * min(screen_w, screen_h)
    scale = min(target_h / height, MAX_WIDTH_SHARE * screen_w / width)
    return max(64, round(width * scale)), max(64, round(height * scale))
