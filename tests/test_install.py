"""What the README's install leaves: OpenCV with its window support, quiet TensorFlow."""

from __future__ import annotations

from importlib import metadata

from realtime.outputs.window import headless_installed, opencv_has_gui


def test_the_test_install_leaves_opencv_its_window_support() -> None:
    """pytorch-grad-cam requires opencv-python-headless, whose cv2 overwrites opencv-python's in the same
    venv (GUI: NONE); the README's test command installs it with --no-deps, so the demo's window still opens."""
    assert opencv_has_gui(), "OpenCV lost its GUI: pip uninstall opencv-python-headless, then " \
        "pip install --force-reinstall opencv-python"  # fmt: skip
    assert not headless_installed()
    assert metadata.distribution("opencv-python")  # the runtime's own requirement
