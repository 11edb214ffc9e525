"""What a panel's caption says, as a value (drawn by view.caption, logged by outputs that draw nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hud:
    """What the caption under a panel says; a figure not measured yet (0) is left out."""

    label: str
    probability: float | None  # None: no class to report (a lost source)
    method: str
    top: Sequence[tuple[str, float]] = ()
    display_fps: float = 0.0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    model_fps: float | None = None
    map_age: int | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def hud_lines(hud: Hud) -> list[str]:
    """The caption's text lines, also used by outputs that log instead of drawing."""
    figures = [
        f"{hud.display_fps:.1f} FPS" if hud.display_fps > 0 else "",
        f"model {hud.model_ms:.1f} ms" if hud.model_ms > 0 else "",
        f"latency {hud.latency_ms:.0f} ms" if hud.latency_ms > 0 else "",
        f"model {hud.model_fps:.1f} FPS" if hud.model_fps else "",
        f"map age {hud.map_age}" if hud.map_age else "",
    ]
    share = "" if hud.probability is None else f" {hud.probability * 100:.1f}%"
    title = f"{hud.label}{share}  [{hud.method}]"
    rates = "  ".join(f for f in figures if f)
    return [title, *([rates] if rates else []), *hud.notes]
