"""Models, all following the network protocol (:class:`trainers.protocols.Network`).

``MODELS`` is the registry of the names used in configurations and on the command line (``--model``);
adding a model is one file plus one ``MODELS.register`` line here.
"""

from __future__ import annotations

from trainers.models.gated import GRU, LSTM
from trainers.models.leaky import LeakyRNN
from trainers.models.modular import ModularRNN
from trainers.models.rate import RateRNN
from trainers.models.wcrnn import (
           WCRNN,
           critical,
           elman,
           heterogeneous,
           orthonormal,
           rotational,
)
from trainers.registry import Registry

#: name -> model class (``--model`` on the command line).
MODELS = Registry("model")
MODELS.register(LeakyRNN)
MODELS.register(GRU)
MODELS.register(LSTM)
MODELS.register(WCRNN)
MODELS.register(RateRNN)
MODELS.register(ModularRNN)

__all__ = ["LeakyRNN", "GRU", "LSTM", "MODELS", "WCRNN", "RateRNN", "ModularRNN", "critical", "rotational",
           "heterogeneous", "orthonormal", "elman"]
