"""Orchestration for the InfluencerFormer benchmark: ``python -m harness <verb>``."""
import logging

logger = logging.getLogger('harness')
