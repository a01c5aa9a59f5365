"""Backends that train and test: ``upstream`` (OneFormer3D's own tools) and ``native`` (harness/native)."""
