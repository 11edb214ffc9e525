"""How well a carried map follows a moving animal between model updates, on the demo's known motion.

The display shows every camera frame; the model updates its map every
`model_every` frames. On the frames in between, the shown map is either the
stale one or the one warped by optical flow. Two distances are scored:

- raw: from the shown map's centroid to the animal's centroid (from the mask);
- tracking: the same, after removing the offset the map already had on the
  model's own frame (a map centred on the elephant's body sits ~30 px from the
  mask centroid, legs and trunk included, and no warping can change that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.engines.local import LocalEngine
from realtime.maps.explain import maps_for
from realtime.maps.flow import MapCarrier, centroid
from realtime.maps.query import Query
from realtime.sources.demo import DemoScene
from realtime.sources.fitting import fit


@dataclass(frozen=True)
class Tracking:
    frames: int  # displayed frames between model updates that were scored
    stale_px: float  # mean raw centroid distance, unwarped map
    warped_px: float  # mean raw centroid distance, flow-warped map
    stale_tracking_px: float  # mean tracking error (offset at the model frame removed), unwarped
    warped_tracking_px: float  # the same, flow-warped

    @property
    def ratio(self) -> float:
        return self.warped_px / self.stale_px if self.stale_px > 0 else 1.0

    @property
    def tracking_ratio(self) -> float:
        return self.warped_tracking_px / self.stale_tracking_px if self.stale_tracking_px > 0 else 1.0


def map_centre(cam: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[float, float] | None:
    """Centroid of the map's hot part (above half its peak), in frame pixels."""
    peak = float(cam.max())
    if peak <= 0:
        return None
    c = centroid(np.maximum(cam - 0.5 * peak, 0.0))
    if c is None:
        return None
    # map cell i covers frame pixels [i*s, (i+1)*s): its centre is pixel (i + 0.5) * s - 0.5
    sx, sy = frame_shape[1] / cam.shape[1], frame_shape[0] / cam.shape[0]
    return (c[0] + 0.5) * sx - 0.5, (c[1] + 0.5) * sy - 0.5


def track(
    engine: LocalEngine, scene: DemoScene, start: int, frames: int, model_every: int, static: bool = False
) -> Tracking:
    """Replay `frames` demo frames with a model update every `model_every` frames; score both displays."""
    size = (engine.info.input_height, engine.info.input_width)
    carriers = {"stale": MapCarrier(warp_maps=False), "warped": MapCarrier(warp_maps=True)}
    raw: dict[str, list[float]] = {"stale": [], "warped": []}
    tracking: dict[str, list[float]] = {"stale": [], "warped": []}
    offset_at_model: tuple[float, float] | None = None
    for step in range(frames):
        index = start if static else start + step
        shot = scene.frame(index)
        truth = centroid(shot.mask)
        if step % model_every == 0:
            result = engine.run(fit(shot.image, size)[None], [[shot.label]])
            maps = maps_for(result, 0, Query(), None)  # column 0: the class asked for
            for carrier in carriers.values():
                carrier.update(shot.image, start + step, [maps])
            centre = map_centre(carriers["stale"].maps[0][0], shot.image.shape)
            offset_at_model = None if centre is None or truth is None else (centre[0] - truth[0], centre[1] - truth[1])
            continue
        if truth is None or offset_at_model is None:
            continue
        for name, carrier in carriers.items():
            centre = map_centre(carrier.carry(shot.image, start + step)[0][0], shot.image.shape)
            if centre is None:
                continue
            dx, dy = centre[0] - truth[0], centre[1] - truth[1]
            raw[name].append(float(np.hypot(dx, dy)))
            tracking[name].append(float(np.hypot(dx - offset_at_model[0], dy - offset_at_model[1])))

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    return Tracking(
        frames=len(raw["warped"]),
        stale_px=mean(raw["stale"]),
        warped_px=mean(raw["warped"]),
        stale_tracking_px=mean(tracking["stale"]),
        warped_tracking_px=mean(tracking["warped"]),
    )
