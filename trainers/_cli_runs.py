"""Subcommands of ``trainers`` that work on run directories (analyse, report, Lyapunov, Hessian)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the run-directory subcommands to the ``trainers`` command."""
