"""Where the tests find the authors' published networks (not a test module).

The networks are the folder ``trained_models/`` of https://github.com/LevinaLab/rnn_timescale_public
(git clone it). Point ``DYNATOOLS_REFERENCE`` at that folder; otherwise the tests look in
``../shared/reference/timescale-paper-checkpoints`` beside the repository. Tests that need them
skip when neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("DYNATOOLS_REFERENCE")
                 or Path(__file__).resolve().parents[3] / "shared" / "reference" / "timescale-paper-checkpoints")
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "cumulative_parity_network_1").is_dir(),
    reason="the authors' networks are absent: set DYNATOOLS_REFERENCE to the trained_models/ folder of a clone "
           "of github.com/LevinaLab/rnn_timescale_public")
