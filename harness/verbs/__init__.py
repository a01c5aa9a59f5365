"""The verbs of ``python -m harness``: one thin module each (HELP, add_arguments, run)."""
from __future__ import annotations

import argparse
import importlib


def add_module_parsers(subparsers, modules: dict[str, str], run_attr: str, only: str | None = None) -> None:
    """One sub-parser per module; each exposes HELP, add_arguments(parser), run(args).

    Args:
        subparsers: the object ``add_subparsers`` returned.
        modules: sub-command name -> dotted module name.
        run_attr: the args attribute that receives the module's ``run``.
        only: the sub-command the command line names, if known: only its module is imported (some
            import torch, seconds each); the others get a bare sub-parser, whose help is then never shown.
    """
    for name, module_name in modules.items():
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP,
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(**{run_attr: module.run})
