"""Tasks: N-parity and N-DMS of the timescale paper (Sec. 3.1); the adding problem, sequential
images (MNIST, CIFAR-10 from local files) and the shipped 8x8 digits of the fading-memory paper.

``TASKS`` is the registry of the names used in configurations and on the command line (``--task``);
adding a task is one file plus one ``TASKS.register`` line here. What the engine needs of a task is
written down in :class:`trainers.protocols.Task`.
"""

from __future__ import annotations

from trainers.registry import Registry
from trainers.tasks.binary import DMS, BinaryTask, Parity, TaskBatch
from trainers.tasks.cognitive import COGNITIVE_TASKS, CognitiveTask
from trainers.tasks.multitau import IntegrationWM, MultiTimescaleWM
from trainers.tasks.rulereversal import RuleReversal
from trainers.tasks.sequence import (
    AddingProblem,
    Digits,
    ImageSequences,
    PermutedDigits,
    PermutedMNIST,
    SequenceBatch,
    SequenceTask,
    SequentialCIFAR10,
    SequentialMNIST,
)

#: name -> task class (``--task`` on the command line).
TASKS = Registry("task")
TASKS.register(Parity)
TASKS.register(DMS)
TASKS.register(AddingProblem)
TASKS.register(Digits)
TASKS.register(PermutedDigits)
TASKS.register(SequentialMNIST)
TASKS.register(PermutedMNIST)
TASKS.register(SequentialCIFAR10)
for _cognitive in COGNITIVE_TASKS:   # the 16 cognitive tasks of 002 (go, rtgo, ..., dnmc)
    TASKS.register(_cognitive)
TASKS.register(MultiTimescaleWM)
TASKS.register(IntegrationWM)
TASKS.register(RuleReversal)   # 002 Sec. 4.1, closed loop

__all__ = ["BinaryTask", "Parity", "DMS", "TaskBatch", "TASKS", "SequenceTask", "AddingProblem",
           "ImageSequences", "SequenceBatch", "Digits", "PermutedDigits", "SequentialMNIST",
           "PermutedMNIST", "SequentialCIFAR10", "CognitiveTask", "COGNITIVE_TASKS",
           "MultiTimescaleWM", "IntegrationWM", "RuleReversal"]
