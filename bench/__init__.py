"""Benchmarks: Portside against Jupyter Kernel Gateway, measured side by side in one run.

Run from the repository root, e.g. ``.venv/bin/python -m bench.run_all``.
"""
