"""The int8 stage of an export: quantize for the CPUs asked for, then check int8 against fp32 here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from realtime.contract import SAVE_EVERY, frames_wanted
from realtime.engines import int8_cpu
from realtime.export.config import ExportConfig, ExportError
from realtime.export.variants.int8 import calibration, quantize
from realtime.progress import Progress

MIN_HELD_OUT = 8  # fewer held-out frames than this say nothing about top-1 agreement
DEMO_HELD_OUT = 100  # demo scenes never used for calibration, with their animals' masks


def steps(config: ExportConfig) -> int:
    """How many progress steps this stage takes: quantizing, and the fidelity check where it runs."""
    return 0 if not config.int8 else 1 + int(config.calibration != "random")


def quantize_checked(
    fp32: Path, output: Path, size: tuple[int, int], config: ExportConfig, progress: Progress
) -> tuple[Any, str]:
    """Static int8 of the forward path for the CPUs asked for, then int8 against fp32 on held-out images
    (not on random data), on this CPU. Returns (fidelity or None, the int8 target written)."""
    wanted = frames_wanted(config.calibration_count)  # a quarter more than calibration, held out
    try:
        images = calibration.calibration_images(config.calibration, size, wanted)
    except quantize.QuantizeError as exc:
        raise ExportError(str(exc)) from exc
    calibrate, held_out = images[: config.calibration_count], images[config.calibration_count :]
    on_demo = config.calibration == "demo" or len(held_out) < MIN_HELD_OUT
    if config.calibration not in ("demo", "random") and on_demo:  # said even with --quiet: the check changed
        calibrate = images  # every frame there is, as the note says
        print(
            f"note: --calibration {config.calibration} has {len(images)} images; the fidelity check needs "
            f"{wanted} ({config.calibration_count} to calibrate, {wanted - config.calibration_count} held out), so "
            f"int8 is calibrated on all {len(images)} and checked on the demo scenes instead; save more with "
            f"gradcam-live --save-frames {config.calibration} --max-frames {wanted * SAVE_EVERY}",
            file=sys.stderr,
        )
    target = int8_cpu.int8_target(config.int8_cpu)
    if not config.quiet:
        print(f"      int8 for {target} CPUs: {int8_cpu.target_reason(config.int8_cpu)}", file=sys.stderr)
    what = f"quantizing to int8 ({config.int8_scope}) on {len(calibrate)} {config.calibration} images"
    with progress.step(what, "int8"):
        quantize.quantize(fp32, output, calibrate, config.int8_scope, target, config.verbose)
    if config.calibration == "random":
        return None, target
    with progress.step("fidelity: int8 against fp32 on held-out images", "fidelity"):
        if on_demo:
            held, masks = calibration.demo_holdout(DEMO_HELD_OUT, size)
            result = calibration.fidelity(fp32, output, held, masks)
        else:
            result = calibration.fidelity(fp32, output, held_out)
    if not config.quiet:
        print(f"      on {int8_cpu.detect().describe()}: {calibration.describe(result)}", file=sys.stderr)
    return result, target
