"""Orchestration for the InfluencerFormer benchmark: ``python -m harness <verb>``."""
import logging

logger = logging.getLogger('harness')

__version__ = '0.1.0'  # keep equal to pyproject.toml
