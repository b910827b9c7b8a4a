"""trainers: train the reference networks of the timescale paper and export labeled recordings.

Models (:mod:`trainers.models`)
    LeakyRNN, GRU, LSTM, MODELS; WCRNN and its residual builders (fading-memory paper)
Tasks (:mod:`trainers.tasks`)
    Parity, DMS, TASKS
Curricula (:mod:`trainers.curricula`)
    CURRICULA
Training
    TrainConfig, train, resume, evaluate, Run, load_model
Recordings and reference networks
    record, import_reference
Robustness experiments (timescale paper Sec. 4.1, 4.3, App. F)
    continuous_accuracy, accuracy_scorer, retrain, retrain_sweep, refit_readout

It imports dynatools; dynatools never imports it.
"""

from __future__ import annotations

from trainers.checkpoint import CheckpointError, load_model
from trainers.config import TrainConfig
from trainers.curricula import CURRICULA
from trainers.evaluation import accuracy_scorer, continuous_accuracy
from trainers.models import GRU, LSTM, MODELS, WCRNN, LeakyRNN
from trainers.record import record
from trainers.reference import import_reference
from trainers.retrain import refit_readout, retrain, retrain_sweep
from trainers.tasks import DMS, TASKS, Parity
from trainers.training import Run, evaluate, resume, train

__all__ = [
    # models
    "LeakyRNN", "GRU", "LSTM", "MODELS", "WCRNN",
    # tasks and curricula
    "Parity", "DMS", "TASKS", "CURRICULA",
    # training
    "TrainConfig", "train", "resume", "evaluate", "Run", "load_model", "CheckpointError",
    # recordings
    "record", "import_reference",
    # robustness experiments
    "continuous_accuracy", "accuracy_scorer", "retrain", "retrain_sweep", "refit_readout",
]
