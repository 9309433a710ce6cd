"""Benchmarks: speed and memory of the export pipeline, side by side in one run."""
