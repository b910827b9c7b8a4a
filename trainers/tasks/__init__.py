"""Tasks: N-parity and N-DMS of the timescale paper (Sec. 3.1); the adding problem, sequential
images (MNIST, CIFAR-10 from local files) and the shipped 8x8 digits of the fading-memory paper.

``TASKS`` maps the names used in configurations and on the command line to the classes.
"""

from __future__ import annotations

from trainers.tasks.binary import DMS, BinaryTask, Parity, TaskBatch
from trainers.tasks.sequence import (
    AddingProblem,
    ImageSequences,
    SequenceBatch,
    cifar10_gray,
    digits,
    mnist,
)

#: name -> task class (``--task`` on the command line).
TASKS = {"parity": Parity, "dms": DMS}

__all__ = ["BinaryTask", "Parity", "DMS", "TaskBatch", "TASKS", "AddingProblem", "ImageSequences",
           "SequenceBatch", "digits", "mnist", "cifar10_gray"]
