"""Tasks of the timescale paper: N-parity and N-DMS (Sec. 3.1).

``TASKS`` maps the names used in configurations and on the command line to the classes.
"""

from __future__ import annotations

from trainers.tasks.binary import DMS, BinaryTask, Parity, TaskBatch

#: name -> task class (``--task`` on the command line).
TASKS = {"parity": Parity, "dms": DMS}

__all__ = ["BinaryTask", "Parity", "DMS", "TaskBatch", "TASKS"]
