"""Benchmarks that print side-by-side ratios, kept out of the wheel: `python -m benchmarks` runs them all into one
table, `python -m benchmarks.<name>` one of them (`benchmarks.gpu` needs only the core layer, no Ray)."""
