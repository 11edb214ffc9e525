"""What gradcam-live saves for int8 calibration and what gradcam-export wants of it: one place for both."""

INT8_WANTS = 40  # gradcam-export --int8 --calibration DIR: 32 frames to calibrate, 8 held out for its check
SAVE_EVERY = 15  # --save-frames keeps every 15th frame: neighbouring frames are nearly the same picture
