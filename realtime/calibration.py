"""What gradcam-live saves for int8 calibration and what gradcam-export wants of it: one place for both."""

CALIBRATION_COUNT = 32  # gradcam-export --int8: frames to calibrate on
SAVE_EVERY = 15  # --save-frames keeps every 15th frame: neighbouring frames are nearly the same picture


def frames_wanted(calibration_count: int) -> int:
    """Frames int8 wants in all: `calibration_count` to calibrate, and a quarter more held out for its check."""
    return calibration_count * 5 // 4


INT8_WANTS = frames_wanted(CALIBRATION_COUNT)  # 40
