"""Models of the timescale paper, all following the step/initial_state/forward/readout protocol.

``MODELS`` maps the names used in configurations and on the command line to the classes; adding a
model is one file plus one line here.
"""

from __future__ import annotations

from trainers.models.gated import GRU, LSTM
from trainers.models.leaky import LeakyRNN
from trainers.models.wcrnn import (
           WCRNN,
           critical,
           elman,
           heterogeneous,
           orthonormal,
           rotational,
)

#: name -> model class of the timescale paper's curricula (``--model`` on the command line).
MODELS = {"leaky": LeakyRNN, "gru": GRU, "lstm": LSTM}

__all__ = ["LeakyRNN", "GRU", "LSTM", "MODELS", "WCRNN", "critical", "rotational", "heterogeneous",
           "orthonormal", "elman"]
