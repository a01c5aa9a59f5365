"""Shared pytest options."""


def pytest_addoption(parser):
    parser.addoption('--update-golden', action='store_true',
                     help='rewrite tests/golden/* from the current code (review the diff!)')
