"""Shared pytest options; the CPU kernels pinned as `python -m harness` pins them (before torch loads)."""
import os

from harness.core import cpu

os.environ['HARNESS_CPU_PIN'] = cpu.pin()


def pytest_addoption(parser):
    parser.addoption('--update-golden', action='store_true',
                     help='rewrite tests/golden/* from the current code (review the diff!)')
