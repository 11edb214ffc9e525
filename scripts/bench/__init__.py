"""The benchmark's measuring code, importable; scripts/benchmark.py only chooses what to run and reports it."""
