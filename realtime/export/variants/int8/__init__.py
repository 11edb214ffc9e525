"""int8: static QDQ quantization of the forward, int8 backward products, calibration and fidelity."""
