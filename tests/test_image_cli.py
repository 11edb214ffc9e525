"""gradcam-image: the seed's one-shot result, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime import image_cli
from tests.helpers.commands import one_line_refusal, run_in_process


def test_an_overlay_onto_its_own_photo_is_refused_and_the_photo_kept(tmp_path: Path) -> None:
    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 32, 3), 120, np.uint8))
    before = photo.read_bytes()
    message = one_line_refusal(run_in_process("realtime.image_cli", str(photo), "--output", str(photo)))
    assert "input image" in message and photo.read_bytes() == before


def test_gradcam_image_reproduces_the_seed(small_models, tmp_path: Path) -> None:
    import cv2

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.full((100, 150, 4), 120, np.uint8))  # BGRA on purpose
    out = tmp_path / "out.png"
    assert (
        image_cli.main([str(src), "--output", str(out), "--model", str(small_models["full"]), "--method", "hirescam"])
        == 0
    )
    assert cv2.imread(str(out)).shape == (100, 150, 3)
    args = [str(src), "--output", str(out), "--model", str(small_models["full"]), "--caption", "--style", "tint"]
    assert image_cli.main(args) == 0
    captioned = cv2.imread(str(out))
    assert captioned.shape[0] > 100 and captioned.shape[1] == 150
    assert image_cli.main([str(tmp_path / "none.png"), "--output", str(out), "--model", str(small_models["full"])]) == 2
