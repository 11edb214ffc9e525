"""The view: maps laid over frames, captions beneath, panels side by side. Pure drawing, no I/O."""
