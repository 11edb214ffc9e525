"""The docs' command blocks run as written, in a fresh shell (the live view's, side by side's and int8's pages:
the commands a reader types, with a camera and VGG16 stood in for)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.commands import ROOT
from tests.helpers.video import count_frames, write_video

BLOCKS = (
    ("docs/live.md", "Live on a camera, a file or a stream"),
    ("docs/live.md", "Side by side: several models, several cameras"),
    ("docs/int8.md", "Int8 on a CPU"),
)


def readme_blocks(text: str) -> dict[str, list[str]]:
    """The bash blocks of each `# ` or `## ` section, as command lines without their comments."""
    blocks: dict[str, list[str]] = {}
    section, inside = "", False
    for line in text.splitlines():
        if line.startswith(("# ", "## ")):
            section = line.split(" ", 1)[1].strip()
        elif line.startswith("```"):
            inside = line.strip() == "```bash"
        elif inside:
            command = line.split("  #", 1)[0].strip()  # comments are set off by two spaces or more
            if command:
                blocks.setdefault(section, []).append(command)
    return blocks


WRAPPER = '''#!{python}
"""The README test's stand-in for {name}: see tests/test_readme.py."""
import os, sys
args = sys.argv[1:]
{rewrite}
os.execv({python!r}, [{python!r}, "-m", {module!r}, *args])
'''


REWRITES = {
    "gradcam-export": (
        "realtime.export.cli",
        """if not ({"--onnx", "--model", "--list-layers"} & set(args)):
    if "--weights" in args:
        at = args.index("--weights")
        del args[at:at + 2]
    args = ["--onnx", os.environ["README_VGG16"], *args]""",
    ),
    "gradcam-live": (
        "realtime.live.cli",
        """def stand_in(spec):
    return os.environ["README_CLIP"] if spec.isdigit() or "://" in spec else spec
args = [stand_in(a) if i and args[i - 1] == "--source" else a for i, a in enumerate(args)]
if "--source" not in args and "--demo" not in args:
    args += ["--source", os.environ["README_CLIP"]]
if not ({"--record", "--serve", "--save-frames", "--no-window"} & set(args)):
    args.append("--no-window")""",
    ),
    "gradcam-image": ("realtime.image_cli", ""),
}


def vgg16_stand_in(path: Path) -> Path:
    """x [N,3,224,224] -> Conv (block5_conv3, stride 8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm [N,1000]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="conv", strides=[8, 8], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["block5_conv3"], name="relu"),
        helper.make_node("GlobalAveragePool", ["block5_conv3"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc"),
    ]
    weights = [numpy_helper.from_array(rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.normal(0, 0.3, (16, 1000)).astype(np.float32), "fc")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "vgg16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1000])], weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def shell(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The user's folder (what the blocks expect to find there) and a clean environment."""
    base = tmp_path_factory.mktemp("readme")
    work, tools = base / "work", base / "tools"
    work.mkdir()
    tools.mkdir()
    for name, (module, rewrite) in REWRITES.items():
        script = tools / name
        script.write_text(WRAPPER.format(python=sys.executable, name=name, module=module, rewrite=rewrite))
        script.chmod(0o755)
    clip = write_video(work / "clip.mp4", 45, (320, 240))  # the camera and the stream of the blocks
    (work / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(work / "frames" / f"{i}.jpg"), _still(i))
    cv2.imwrite(str(work / "photo.jpg"), _still(7))
    env = {
        "PATH": f"{tools}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(base),
        "PYTHONPATH": str(ROOT),  # the wrappers run this checkout, as `pip install -e .` makes .venv do
        "README_VGG16": str(vgg16_stand_in(base / "vgg16.onnx")),
        "README_CLIP": str(clip),
    }
    return work, env


def _still(seed: int) -> np.ndarray:
    from skimage import data

    image = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(np.roll(image, 17 * seed, axis=1))


def _run_block(where: tuple[str, str], work: Path, env: dict[str, str]) -> str:
    page, section = where
    lines = readme_blocks((ROOT / page).read_text())[section]
    said = []
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["source", ".venv/bin/activate"]:
            continue  # the environment's PATH already starts with .venv/bin
        if words[0] == "pip":
            extras = re.findall(r"\[([a-z,]+)\]", line)
            modules = {"export": ("tensorflow", "tf2onnx", "onnx"), "dev": ("pytest", "playwright"),
                       "torch": ("torch", "timm"), "camera": ("cv2_enumerate_cameras",),
                       "docs": ("mkdocs", "material")}  # fmt: skip
            for extra in filter(None, ",".join(extras).split(",")):
                assert extra in modules, f"{line}: no extra {extra!r} in pyproject.toml"
                for module in modules[extra]:  # found, not imported: TensorFlow's import is slow
                    if importlib.util.find_spec(module) is None:
                        pytest.skip(f"{line}: {module} is not installed here")
            continue
        proc = subprocess.run(["bash", "-e", "-c", line], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{line}\n{proc.stderr[-3000:]}"
        said.append(proc.stdout + proc.stderr)
    return "\n".join(said)


def test_the_readme_blocks_run_as_written(shell: tuple[Path, dict[str, str]]) -> None:
    work, env = shell
    said = _run_block(BLOCKS[0], work, env)
    assert (work / "models" / "vgg16_gradcam_full.onnx").exists() and (work / "photo_cam.png").exists()
    assert count_frames(work / "out.mp4") == 45 and "no display here: running without a window" in said
    for name in ("before.onnx", "after.onnx"):  # the reader's own two graphs: here, the Live block's export
        os.link(work / "models" / "vgg16_gradcam_full.onnx", work / name)
    _run_block(BLOCKS[1], work, env)
    assert count_frames(work / "compare.webm") > 0
    said = _run_block(BLOCKS[2], work, env)
    assert (work / "models" / "vgg16_gradcam_pooled_int8.onnx").exists() and len(list((work / "calib").iterdir()))
    assert "kept 3 frames in calib" in said and "int8 fidelity on this CPU" in said, said


def test_the_readme_install_and_live_blocks_run_as_written(shell: tuple[Path, dict[str, str]]) -> None:
    """The README's own commands: the install (its extras present here), the version, an export of any ONNX
    classifier (resnet50.onnx: a stand-in), the live view on camera 0 (a clip), and the detector demo."""
    work, env = shell
    if not (work / "resnet50.onnx").exists():
        os.link(env["README_VGG16"], work / "resnet50.onnx")
    said = _run_block(("README.md", "Install"), work, env)
    from realtime import __version__

    assert f"gradcam-live {__version__}" in said
    said = _run_block(("README.md", "Live"), work, env)
    assert (work / "models" / "resnet50_gradcam.onnx").exists()
    assert "frames shown" in said and count_frames(work / "gradcam_demo.webm") > 0
