"""Checks a graph passes before it is written: portable (portable.py) and numerically right (selfcheck.py)."""
