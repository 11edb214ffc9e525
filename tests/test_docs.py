"""The README and the documentation site: short, built with --strict, every Python block run as written,
every path they name present, and the tables that come from the code equal to the code's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers.commands import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
PATH = re.compile(r"`((?:realtime|tests|scripts|docs|\.ci)/[A-Za-z0-9_./-]+)`")


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"the README has {len(lines)} lines; move the rest into docs/"
    assert "gradcam-live --demo" in lines[3] and "setup_tests.sh" in lines[4] and "pytest" in lines[4]


def test_every_path_the_readme_and_the_docs_name_exists() -> None:
    missing = [f"{page.relative_to(ROOT)}: {path}" for page in PAGES for path in PATH.findall(page.read_text())
               if not (ROOT / path.rstrip(".")).exists() and "*" not in path]  # fmt: skip
    assert not missing, missing


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ops = (tmp_path / "site" / "reference" / "ops" / "index.html").read_text()
    assert "Conv" in ops and "generated:" not in ops  # the placeholders were filled


def test_the_readme_methods_table_is_the_codes() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from docs_hooks import methods

    assert methods() in (ROOT / "README.md").read_text()


def test_the_readmes_python_block_runs_as_written() -> None:
    scope: dict[str, object] = {}
    exec(compile(python_blocks(ROOT / "README.md")[0], "README.md", "exec"), scope)
    assert scope["shown"].shape == (480, 640, 3)  # type: ignore[attr-defined]


def test_the_api_pages_block_runs_as_written(small_models, tmp_path: Path, monkeypatch) -> None:
    """docs/api.md, with its model and photo put where it expects them."""
    import cv2

    (tmp_path / "models").mkdir()
    shutil.copy(small_models["full"], tmp_path / "models" / "resnet50_gradcam_full.onnx")
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(python_blocks(ROOT / "docs" / "api.md")[0], "docs/api.md", "exec"), scope)
    assert scope["maps"].shape[0] == 3  # type: ignore[attr-defined]
    assert scope["shown"].shape == (90, 120, 3)  # type: ignore[attr-defined]
    assert len(scope["results"]) == 2  # type: ignore[arg-type]


def test_the_detector_pages_block_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    """docs/detectors.md, the shipped fair detector standing in for a YOLOv8n export."""
    from realtime.demo.models import demo_model_paths
    from realtime.sources import scenes

    (tmp_path / "models").mkdir()
    shutil.copy(demo_model_paths("detectors")["fair"], tmp_path / "models" / "yolov8n_gradcam_detector.onnx")
    monkeypatch.chdir(tmp_path)
    frame = scenes.dataset(2, seed=1, biased=False, size=(240, 320))[0].image
    scope: dict[str, object] = {"frame_bgr": frame}
    exec(compile(python_blocks(ROOT / "docs" / "detectors.md")[0], "docs/detectors.md", "exec"), scope)
    assert scope["found"].boxes and scope["shown"].shape == frame.shape  # type: ignore[attr-defined]


def test_the_readme_families_table_is_the_corpus_tests() -> None:
    from tests.helpers.corpus import families_table

    assert families_table() in (ROOT / "README.md").read_text(), f"update the README's table to:\n{families_table()}"
