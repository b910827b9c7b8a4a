"""trainers: train the reference networks of the papers and export labeled recordings.

Registries (each name -> class that builds itself from its configuration section)
    MODELS (leaky, gru, lstm, wcrnn, rate, modular), TASKS (parity, dms, adding, digits, pdigits, smnist, psmnist,
    scifar10, the cognitive tasks, rule-reversal, ...), CURRICULA (none, single-head, multi-head,
    sliding, all-heads, fixed, percentile), METHODS (none, cd, sctt, dasc: 002's training-time
    simulations)
Models (:mod:`trainers.models`)
    LeakyRNN, GRU, LSTM; WCRNN and its residual builders (fading-memory paper); RateRNN
    (continuous-time rate network with diverse timescales and Dale's law)
Tasks (:mod:`trainers.tasks`)
    Parity, DMS, AddingProblem, Digits, ...
The engine
    TrainConfig, train, resume, evaluate, Run, RunDir, load_model
Recordings and reference networks
    record, import_reference
Robustness experiments (timescale paper Sec. 4.1, 4.3, App. F)
    continuous_accuracy, accuracy_scorer, retrain, retrain_sweep, refit_readout
Run analyses and the paper's figures
    analyze_run, make_report
Skip-connection training (002 Sec. 3-4)
    Simulation, misalignment, skip_table

It imports dynatools; dynatools never imports it. Importing it before torch makes idle OpenMP
threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set; :mod:`dynatools.threads`).
"""

from __future__ import annotations

from dynatools.threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads OpenMP: idle threads sleep, not spin (dynatools.threads)

from trainers.analyze import analyze_run
from trainers.checkpoint import CheckpointError, load_model
from trainers.config import TrainConfig
from trainers.curricula import CURRICULA
from trainers.engine import Run, evaluate, resume, train
from trainers.evaluation import accuracy_scorer, continuous_accuracy
from trainers.models import GRU, LSTM, MODELS, WCRNN, LeakyRNN, RateRNN
from trainers.record import record
from trainers.report import make_report
from trainers.reference import import_reference
from trainers.retrain import refit_readout, retrain, retrain_sweep
from trainers.misalignment import misalignment
from trainers.rundir import RunDir
from trainers.skip import METHODS, Simulation
from trainers.skip_table import skip_table
from trainers.tasks import DMS, TASKS, AddingProblem, Digits, Parity

__all__ = [
    # registries and models
    "MODELS", "TASKS", "CURRICULA", "METHODS", "LeakyRNN", "GRU", "LSTM", "WCRNN", "RateRNN",
    # tasks
    "Parity", "DMS", "AddingProblem", "Digits",
    # the engine and run directories
    "TrainConfig", "train", "resume", "evaluate", "Run", "RunDir", "load_model", "CheckpointError",
    # recordings
    "record", "import_reference",
    # robustness experiments
    "continuous_accuracy", "accuracy_scorer", "retrain", "retrain_sweep", "refit_readout",
    # run analyses and figures
    "analyze_run", "make_report",
    # skip-connection training
    "Simulation", "misalignment", "skip_table",
]
