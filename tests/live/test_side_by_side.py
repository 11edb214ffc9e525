"""Several models and several sources: one batch per model, a mosaic."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from realtime import contract
from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live import cli
from realtime.live.loop import Loop
from realtime.live.start import LiveConfig, run_session
from realtime.maps.query import Query
from realtime.outputs.controls import Controls
from realtime.sources.demo import DemoScene, DemoSource
from realtime.sources.fitting import fit
from realtime.sources.group import SourceSet
from realtime.sources.kinds import SourceError
from tests.helpers.collect import Collect
from tests.helpers.video import count_frames, write_video


def relabelled(path: Path, out: Path, labels: list[str], name: str) -> Path:
    """A copy of a graph whose classes carry other names (a model trained with another label order)."""
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == contract.META_LABELS:
            prop.value = json.dumps(labels)
        if prop.key == contract.META_MODEL_NAME:
            prop.value = name
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> list[LocalEngine]:
    """The fair demo model, and the same weights with its two labels swapped: ids differ, names agree."""
    fair = demo_model_paths()["fair"]
    swapped = relabelled(fair, tmp_path_factory.mktemp("m") / "swapped.onnx", ["penguin", "elephant"], "swapped")
    return [LocalEngine(p, EngineOptions(providers="cpu", warmup=1)) for p in (fair, swapped)]


def test_a_class_given_by_name_is_resolved_through_each_models_labels(engines: list[LocalEngine]) -> None:
    seen = Collect()
    with SourceSet([DemoSource(paced=False)]) as sources:
        Loop(engines, sources, Controls(Query(class_name="penguin")), [seen]).run(3)
    for shown in seen.shown:
        fair, swapped = shown.results
        assert int(fair.classes[0, 0]) == 1 and int(swapped.classes[0, 0]) == 0  # the same class, two ids
        # the same weights: "penguin" of the swapped model is logit 0, which the fair model calls elephant
        frame = shown.frames[0]
        assert frame is not None
        direct = engines[0].run(fit(frame.image, (224, 224))[None], [[0]])
        np.testing.assert_allclose(swapped.cam[0, 0], direct.cam[0, 0], atol=1e-5)
        labels = [hud.label for hud in shown.huds]
        assert labels == ["fair: penguin", "swapped: penguin"]  # each panel names its model and class


def test_each_panel_shows_its_own_model_time(engines: list[LocalEngine]) -> None:
    seen = Collect()
    with SourceSet([DemoSource(paced=False)]) as sources:
        summary = Loop(engines, sources, Controls(), [seen]).run(6)
    last = seen.shown[-1]
    assert len(summary.stats.engine_ms) == 2
    assert [hud.model_ms for hud in last.huds] == pytest.approx(list(last.stats.engine_ms))
    assert last.stats.model_ms == pytest.approx(sum(last.stats.engine_ms), rel=0.35)  # medians of a sum
    assert last.image.shape[1] == 2 * 640  # two panels side by side


def test_several_sources_go_to_each_model_as_one_batch(engines: list[LocalEngine], tmp_path: Path) -> None:
    videos = [write_video(tmp_path / f"{i}.mp4", 5, fps=30.0) for i in range(2)]
    from realtime.sources.kinds import open_source

    seen = Collect()
    with SourceSet([open_source(str(v)) for v in videos]) as sources:
        Loop(engines, sources, Controls(), [seen]).run(4)
    shown = seen.shown[-1]
    assert all(r.logits.shape[0] == 2 for r in shown.results)  # one call per model, both sources in it
    frames = [f for f in shown.frames if f is not None]
    assert len(frames) == 2
    size = (engines[0].info.input_height, engines[0].info.input_width)
    alone = engines[0].run(fit(frames[1].image, size)[None], [[-1]])
    np.testing.assert_allclose(shown.results[0].logits[1], alone.logits[0], rtol=1e-4, atol=1e-5)
    assert shown.image.shape[0] > 2 * 480  # two rows: one per source


class FlakyCamera:
    """A live 30 FPS source that drops out after `good` frames and cannot be reopened until `back`."""

    live, name, fps = True, "flaky", 30.0

    def __init__(self, good: int) -> None:
        self.good, self.sent, self.opens = good, 0, 0
        self.back = threading.Event()
        self.scene = DemoScene()

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and not self.back.is_set():
            raise SourceError("still unplugged")

    def read(self) -> np.ndarray | None:
        if self.sent >= self.good and not self.back.is_set():
            return None
        self.sent += 1
        return self.scene.frame(self.sent).image

    def close(self) -> None:
        pass


def _lost_after_seen(shown: list) -> bool:
    present = [s.frames[1] is not None for s in shown]
    return True in present and False in present[present.index(True) :]


def test_a_lost_source_is_shown_as_lost_and_comes_back_while_the_other_goes_on(engines: list[LocalEngine]) -> None:
    from realtime.sources.reader import Backoff

    flaky = FlakyCamera(good=3)
    seen = Collect()
    sources = SourceSet([DemoSource(), flaky], Backoff(first=0.01, attempts=2), log=lambda m: None, reopen_every=0.1)
    with sources:
        loop = Loop(engines[:1], sources, Controls(), [seen])
        runner = threading.Thread(target=loop.run, args=(120,))
        runner.start()
        # plug it back in once the view has shown it lost (however long a busy machine takes), early enough
        # for the rest of the run to show it back
        while runner.is_alive() and len(seen.shown) < 80 and not _lost_after_seen(list(seen.shown)):
            threading.Event().wait(0.02)
        flaky.back.set()
        runner.join(timeout=30)
    assert len(seen.shown) == 120
    present = [s.frames[1] is not None for s in seen.shown]
    started = next(i for i, s in enumerate(seen.shown) if s.frames[0] is not None)  # either may deliver first
    assert all(s.frames[0] is not None for s in seen.shown[started:])  # then the demo went on throughout
    first_loss = present.index(False, present.index(True))
    assert True in present[first_loss:], "the flaky source never came back"
    lost_frame = seen.shown[first_loss]
    assert len(lost_frame.huds) == 1  # only the live source has a model panel; the lost one a placeholder
    assert lost_frame.image.shape[0] > 2 * 480  # its row is still there
    assert sources.totals()["captured"] > 120


def test_gradcam_live_with_two_models_and_two_sources(tmp_path: Path, capsys) -> None:
    videos = [write_video(tmp_path / f"{i}.mp4", 6, fps=30.0) for i in range(2)]
    paths = demo_model_paths()
    out = tmp_path / "mosaic.avi"
    argv = ["--model", str(paths["biased"]), "--model", str(paths["fair"]), "--source", str(videos[0])]
    argv += ["--source", str(videos[1]), "--no-window", "--record", str(out), "--providers", "cpu"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "biased" in err and "fair" in err  # each model's time in the summary
    assert count_frames(out) >= 5
    import cv2

    ok, frame = cv2.VideoCapture(str(out)).read()
    assert ok and frame.shape[1] == 2 * 640 and frame.shape[0] > 2 * 480


EVERY_FLAG = {  # one demo-mode run per flag, with this value ({tmp}: the test's folder)
    "--source": ["{tmp}/v.mp4"], "--model": ["{fair}"], "--demo": [], "--method": ["gradcam++"], "--layer": ["0"],
    "--class": ["penguin"], "--top-k": ["2"], "--smooth": ["0.5"], "--alpha": ["0.7"], "--style": ["tint"],
    "--providers": ["cpu"], "--fp16": [], "--no-tf32": [], "--threads": ["1"], "--crop": ["center"],
    "--record": ["{tmp}/out.avi"], "--snapshots": ["{tmp}/snaps"], "--no-window": [], "--max-frames": ["3"],
    "--serve": ["0"], "--max-clients": ["2"], "--token": ["secret"], "--display": ["camera"], "--no-warp": [],
    "--save-frames": ["{tmp}/frames"], "--mirror": [], "--fullscreen": [], "--camera-size": ["320x240"],
    "--camera-fps": ["15"], "--fourcc": ["MJPG"], "--cuda-graph": [], "--window-size": ["800x450"],
}  # fmt: skip


def test_the_flag_table_covers_every_flag() -> None:
    flags = {o for action in cli.build_parser()._actions for o in action.option_strings if o.startswith("--")}
    assert flags - {"--help", "--list-cameras", "--version"} == set(EVERY_FLAG)  # these print and exit


def _effect(flag: str, config: LiveConfig, result, tmp: Path) -> None:
    """What each flag must change, seen from outside the loop."""
    huds, engines = result.summary.last_huds, result.engines
    checks = {
        "--source": lambda: result.summary.captured <= 4,
        "--model": lambda: [e.info.model_name for e in engines] == ["fair"],
        "--method": lambda: all(h.method == "gradcam++" for h in huds),
        "--class": lambda: all(h.label.endswith("penguin") for h in huds),
        "--crop": lambda: config.fit == "center",
        "--fp16": lambda: all(e.options.fp16 for e in engines),
        "--no-tf32": lambda: not any(e.options.tf32 for e in engines),
        "--cuda-graph": lambda: all(e.options.cuda_graph and "needs the CUDA provider" in e.notice for e in engines),
        "--threads": lambda: all(e.options.threads == 1 for e in engines),
        "--record": lambda: count_frames(tmp / "out.avi") == 3,
        "--save-frames": lambda: len(list((tmp / "frames").glob("*.jpg"))) >= 1,
        "--top-k": lambda: _width(tmp) == 2 * 2 * 640,
        "--camera-size": lambda: config.camera.size == (320, 240),  # asked of cameras; the demo is none
        "--mirror": lambda: config.mirror,
        "--window-size": lambda: config.window_size == (800, 450),  # asked of the window; --no-window here
    }
    assert checks.get(flag, lambda: True)(), flag


def _width(tmp: Path) -> int:
    import cv2

    return int(cv2.VideoCapture(str(tmp / "out.avi")).get(cv2.CAP_PROP_FRAME_WIDTH))


@pytest.mark.parametrize("flag", sorted(EVERY_FLAG))
def test_every_flag_works_in_demo_mode(flag: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--demo", "--no-window", "--providers", "cpu", "--max-frames", "3", "--record", str(tmp_path / "out.avi")]
    if flag == "--serve":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv += ["--serve", str(port)]
    elif flag not in ("--demo", "--no-window", "--providers", "--max-frames", "--record"):
        write_video(tmp_path / "v.mp4", 4)
        values = [v.format(tmp=tmp_path, fair=demo_model_paths()["fair"]) for v in EVERY_FLAG[flag]]
        argv += [flag, *values]
    config = cli.parse_config(argv)
    result = run_session(config)
    assert result.summary.displayed == 3
    _effect(flag, config, result, tmp_path)
