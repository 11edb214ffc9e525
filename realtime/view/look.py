"""How the maps are shown, as one frozen value: opacity, style, smoothing, freezing, mirroring.

None of it changes what a model is asked; a new look redraws the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE


@dataclass(frozen=True)
class Look:
    """The map's opacity and style, its smoothing over time, and whether the frame is frozen or mirrored."""

    alpha: float = DEFAULT_ALPHA
    style: str = DEFAULT_STYLE
    smooth: float = 0.0  # EMA weight of the previous map, 0..1
    frozen: bool = False  # keep explaining the frame on screen
    mirror: bool = False  # frames flipped left-right before the model and the drawing
