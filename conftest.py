"""Loaded by pytest before any test module or doctest imports torch.

Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, dynatools.threads):
on a machine whose cores are shared with other work, spinning threads made the suite 10-100x
slower (issue 12).

With ``pytest -n N`` each worker process gets ``cores // N`` threads (``OMP_NUM_THREADS``, unless
you set it): N workers with one thread per core each oversubscribed a 16-core machine (issue 17).
"""

from dynatools.threads import prefer_passive_waiting, share_cores_between_workers

prefer_passive_waiting()
share_cores_between_workers()
