"""The distributed layer (the only package that imports ray): generation pipeline and Ray Train trainer."""
