"""Browser view: watch and steer the live loop from a tab (MJPEG stream plus a small JSON API)."""
