"""Benchmarks that print side-by-side ratios (core layer, no Ray): run them as `python -m llmgan.bench.<name>`."""
