"""YOLO files through gradcam-export --onnx: the kept boxes are Ultralytics' own, each box's gradients, weights
and maps torch autograd's, its LayerCAM Ultralytics' visualize formula's; the graphs portable and OpenVINO's too.

References: Ultralytics' `predict` (same threshold and IoU) for the boxes; torch autograd through the Detect
head, its inputs taken as they are (leaves), for the gradients; Ultralytics' `class_activation_map` formula
(gradients through the whole model) for LayerCAM at the box's own level.
"""

from __future__ import annotations

import copy

import numpy as np

from realtime import contract
from realtime.export.checks.run import run_onnx
from realtime.maps.boxes import window_in_map
from realtime.sources.fitting import letterbox
from tests.export.detect.conftest import SIZE, Yolo, frames
from tests.helpers.optional import needs
from tests.helpers.second_runtime import assert_valid_fp32_graph

torch = needs("torch")
skimage_data = needs("skimage.data")

TOLERANCE = 1e-4  # gradients, weights and logits: of their largest value
MAP_TOLERANCE = 1e-3
OTHER_RUNTIME = 1e-3  # OpenVINO against onnxruntime: two runtimes' float32 kernels through a whole YOLO


def model_inputs() -> tuple[np.ndarray, list]:
    fitted = [letterbox(frame, (SIZE, SIZE)) for frame in frames()]
    return np.stack([image for image, _ in fitted]), [placement for _, placement in fitted]


def test_kept_boxes_equal_ultralytics_predict_in_model_and_frame_pixels(yolo: Yolo) -> None:
    from ultralytics.utils.ops import scale_boxes

    images, placements = model_inputs()
    batch = _run_all(yolo, images, np.full((len(images), 4), -1, np.int64))
    kept = 0
    for i, (image, placement, frame) in enumerate(zip(images, placements, frames(), strict=True)):
        alone = run_onnx(yolo.graph, image[None], np.full((1, 4), -1, np.int64))
        assert batch[contract.OUT_COUNT][i] == alone[contract.OUT_COUNT][0]  # the batch changes nothing
        n = int(alone[contract.OUT_COUNT][0])
        _assert_same_boxes(*(_rows(r[contract.OUT_BOXES][j, :n], r[contract.OUT_SCORES][j, :n],
                                   r[contract.OUT_BOX_CLASSES][j, :n]) for r, j in ((batch, i), (alone, 0))), 1e-4)
        for r, j in ((batch, i), (alone, 0)):  # past the count: empty slots
            assert not r[contract.OUT_BOXES][j, n:].any() and not r[contract.OUT_SCORES][j, n:].any()
            assert (r[contract.OUT_BOX_CLASSES][j, n:] == -1).all()
        theirs = yolo.model.predict(image, imgsz=SIZE, conf=0.25, iou=0.7, max_det=32, verbose=False)[0].boxes
        count = int(batch[contract.OUT_COUNT][i])
        assert count == len(theirs), (yolo.arch, i)
        scores, classes = batch[contract.OUT_SCORES][i, :count], batch[contract.OUT_BOX_CLASSES][i, :count]
        in_model = _rows(theirs.xyxy.numpy(), theirs.conf.numpy(), theirs.cls.numpy())
        _assert_same_boxes(_rows(batch[contract.OUT_BOXES][i, :count].clip(0, SIZE), scores, classes), in_model,
                           1e-3 * SIZE)  # fmt: skip
        in_frame = _rows(scale_boxes((SIZE, SIZE), theirs.xyxy.clone(), frame.shape[:2]).numpy(),
                         theirs.conf.numpy(), theirs.cls.numpy())  # fmt: skip
        on_frame = _rows(placement.to_frame(batch[contract.OUT_BOXES][i, :count], frame.shape), scores, classes)
        _assert_same_boxes(on_frame, in_frame, 1e-3 * max(frame.shape[:2]))
        kept += count
    assert kept >= 10, f"{yolo.arch}: too few boxes to say anything"


def _batches(yolo: Yolo) -> bool:
    """Whether the file Ultralytics wrote takes a batch (dynamic=True); its static files reshape with batch 1."""
    import onnx

    dim = onnx.load(str(yolo.source), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return not dim.HasField("dim_value") or dim.dim_value != 1


def _run_all(yolo: Yolo, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """One call for all five images where the file takes a batch; otherwise one call each."""
    if _batches(yolo):
        return run_onnx(yolo.graph, images, targets)
    calls = [run_onnx(yolo.graph, images[i : i + 1], targets[i : i + 1]) for i in range(len(images))]
    return {name: np.concatenate([c[name] for c in calls]) for name in calls[0]}


def _rows(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[box, score, class] rows in float64."""
    return np.concatenate([boxes, scores[:, None], classes[:, None]], axis=1).astype(np.float64)


def _assert_same_boxes(ours: np.ndarray, theirs: np.ndarray, box_tolerance: float) -> None:
    """One to one: each of their boxes has its own of ours with the same class, a score within 1e-4 and corners
    within `box_tolerance`. Paired by value, not by rank: two runtimes may list boxes whose scores differ by
    less than their rounding in either order, whatever the CPU."""
    assert len(ours) == len(theirs)
    free = list(range(len(ours)))
    for row in theirs:
        fits = [j for j in free if ours[j, 5] == row[5] and abs(ours[j, 4] - row[4]) <= 1e-4
                and np.abs(ours[j, :4] - row[:4]).max() <= box_tolerance]  # fmt: skip
        assert fits, f"no box of ours matches {row}"
        free.remove(min(fits, key=lambda j: float(np.abs(ours[j, :4] - row[:4]).max())))


def _detect_head_autograd(yolo: Yolo, image: np.ndarray, ours: dict[str, np.ndarray]) -> tuple[list, object]:
    """The Detect head's inputs (as leaves) and its class logits [C, A], with torch autograd in float64.

    The leaves are the head inputs our graph computed (checked against torch's own forward to 1e-3 here): the
    backward is compared from the same point, so the body's float32 rounding (1e-4 of the largest value in a
    random YOLO26's attention) is not charged to it."""
    model = copy.deepcopy(yolo.model.model).double().eval()
    head = model.model[-1]
    seen: list = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.extend(args[0]))
    x = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].double() / 255
    with torch.no_grad():
        model(x)
    hook.remove()
    leaves = []
    for i, theirs in enumerate(seen):
        mine = torch.from_numpy(ours[_level(contract.OUT_ACTIVATIONS, i)][:1].astype(np.float64)).permute(0, 3, 1, 2)
        assert float((mine - theirs).abs().max()) <= MAP_TOLERANCE * float(theirs.abs().max()), (yolo.arch, i)
        leaves.append(mine.clone().requires_grad_(True))
    head.shape = None  # anchors rebuilt for these leaves
    with torch.enable_grad():
        _, raw = head(leaves)
    scores = raw["scores"] if "scores" in raw else raw["one2many"]["scores"]
    return leaves, scores[0]


def _level(name: str, level: int) -> str:
    return contract.layer_output(name, level)


def test_each_box_gradients_weights_and_maps_equal_torch_autograd(yolo: Yolo) -> None:
    images, _ = model_inputs()
    explained = 0
    for image in images[:3]:
        for row in ([-1] * 6, [int(c) for c in run_onnx(yolo.graph, image[None], np.full((1, 1), -1))[
                contract.OUT_BOX_CLASSES][0, :1]] * 3):  # fmt: skip  # the best boxes; the best class's boxes
            ours = run_onnx(yolo.graph, image[None], np.array([row], np.int64))
            leaves, logits = _detect_head_autograd(yolo, image, ours)
            offsets = np.cumsum([0] + [a.shape[2] * a.shape[3] for a in leaves])
            for k in np.flatnonzero(ours[contract.OUT_EXPLAINED][0] >= 0):
                level, r, c = (int(v) for v in ours[contract.OUT_ANCHORS][0, k])
                slot = int(ours[contract.OUT_EXPLAINED][0, k])
                box_class = int(ours[contract.OUT_BOX_CLASSES][0, slot])
                assert row[k] < 0 or box_class == row[k]
                logit = logits[box_class, offsets[level] + r * leaves[level].shape[3] + c]
                assert abs(float(logit) - ours[contract.OUT_BOX_LOGITS][0, k]) <= TOLERANCE * max(1, abs(float(logit)))
                grads = torch.autograd.grad(logit, leaves, retain_graph=True)
                for i, (a, g) in enumerate(zip(leaves, grads, strict=True)):
                    g_ref, a_ref = g[0].permute(1, 2, 0).numpy(), a[0].detach().permute(1, 2, 0).numpy()
                    window = ours[_level(contract.OUT_GRADIENTS, i)][0, k]
                    full = window_in_map(window, r, c, g_ref.shape[:2]) if i == level else np.zeros_like(g_ref)
                    scale = max(float(np.abs(g_ref).max()), 1e-12)
                    assert np.abs(full - g_ref).max() <= TOLERANCE * scale, (yolo.arch, k, i)
                    weights = g_ref.mean((0, 1))
                    got = ours[_level(contract.OUT_WEIGHTS, i)][0, k]
                    assert np.abs(got - weights).max() <= TOLERANCE * max(float(np.abs(weights).max()), 1e-12)
                    cam = np.maximum((a_ref * weights).sum(-1), 0)
                    cam /= max(float(cam.max()), 1e-30)
                    assert np.abs(ours[_level(contract.OUT_CAM, i)][0, k] - cam).max() <= MAP_TOLERANCE
                    layercam = np.maximum((np.maximum(g_ref, 0) * a_ref).sum(-1), 0)
                    got = ours[_level(contract.OUT_LAYERCAM, i)][0, k]
                    assert np.abs(got - layercam).max() <= MAP_TOLERANCE * max(float(layercam.max()), 1e-12)
                explained += 1
    assert explained >= 5, f"{yolo.arch}: too few boxes explained"


def test_layercam_at_the_box_level_equals_ultralytics_visualize(yolo: Yolo) -> None:
    """Ultralytics' class_activation_map differentiates each prediction's logit through the whole model: at the
    box's own level that is the head's own gradient (nothing else reads that level on the way to the logit),
    so its per-level LayerCAM, before the max over predictions, is ours. At the finer levels the whole-model
    gradient also runs back through the neck's bottom-up path; ours, the head's, is zero there."""
    image = model_inputs()[0][0]
    ours = run_onnx(yolo.graph, image[None], np.full((1, 4), -1, np.int64))
    model = yolo.model.model.float().eval()
    head = model.model[-1]
    acts, scores = [], []
    hooks = [head.register_forward_pre_hook(lambda m, args: acts.extend(args[0])),
             head.register_forward_hook(lambda m, args, out: scores.append(
                 (out[1]["one2many"] if "one2many" in out[1] else out[1])["scores"]))]  # fmt: skip
    head.shape = None
    x = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.enable_grad():
        x.requires_grad_(True)
        model(x)
        for hook in hooks:
            hook.remove()
        flat = scores[0].reshape(*scores[0].shape[:2], -1)
        offsets = np.cumsum([0] + [a.shape[2] * a.shape[3] for a in acts])
        reached_lower = 0
        for k in np.flatnonzero(ours[contract.OUT_EXPLAINED][0] >= 0):
            level, r, c = (int(v) for v in ours[contract.OUT_ANCHORS][0, k])
            box_class = int(ours[contract.OUT_BOX_CLASSES][0, int(ours[contract.OUT_EXPLAINED][0, k])])
            logit = flat[0, box_class, offsets[level] + r * acts[level].shape[3] + c]
            grads = torch.autograd.grad(logit, acts, retain_graph=True)
            per_level = [(g.float().clamp(min=0) * a.float()).sum(1).clamp(min=0)[0].detach().numpy()
                         for a, g in zip(acts, grads, strict=True)]  # fmt: skip  # their formula
            got = ours[_level(contract.OUT_LAYERCAM, level)][0, k]
            assert np.abs(got - per_level[level]).max() <= MAP_TOLERANCE * max(float(per_level[level].max()), 1e-12)
            reached_lower += sum(float(m.max()) > 0 for m in per_level[:level])
    if any(ours[contract.OUT_ANCHORS][0, :, 0] > 0):
        assert reached_lower > 0  # the neck's path, which the head's own gradient leaves out (see the docs)


def test_the_graphs_are_portable_and_openvino_gives_the_same(yolo: Yolo) -> None:
    ov = needs("openvino")
    assert_valid_fp32_graph(yolo.graph)
    images, _ = model_inputs()
    images = images if _batches(yolo) else images[:1]
    targets = np.full((len(images), 4), -1, np.int64)
    ours = run_onnx(yolo.graph, images, targets)
    compiled = ov.Core().compile_model(str(yolo.graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({contract.INPUT_IMAGE: images, contract.INPUT_TARGETS: targets})
    for output in compiled.outputs:
        name = next(n for n in output.get_names() if n in ours)
        theirs, mine = np.asarray(result[output]), ours[name]
        scale = max(float(np.abs(mine).max()), 1e-12)
        assert np.abs(theirs.astype(np.float64) - mine).max() <= OTHER_RUNTIME * scale, (yolo.arch, name)
