"""Thin wrapper: `python scripts/export.py ...` is `gradcam-export ...`."""

import sys

from realtime.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
