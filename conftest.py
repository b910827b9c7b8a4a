"""Loaded by pytest before any test module or doctest imports torch.

Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, dynatools.threads):
on a machine whose cores are shared with other work, spinning threads made the suite 10-100x
slower (issue 12).
"""

from dynatools.threads import prefer_passive_waiting

prefer_passive_waiting()
