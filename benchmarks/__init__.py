"""Benchmarks of speed and search quality; each prints a table and writes benchmarks/results/<name>.json."""
