"""Sources: where frames come from (cameras, files, folders, streams, the demo scene), read on their own
threads so the newest frame is always at hand, cleaned up, and fitted to a model's input."""
