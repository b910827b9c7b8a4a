"""How many CPU threads torch and the FFT pool use: a policy for shared machines.

Why a policy
    torch's default (one OpenMP thread per core, threads that spin while they wait for work)
    is fast on an idle machine with large matrices and collapses when the cores are shared:
    measured on a 2-core machine beside one CPU-bound process, a 256-unit QR/matmul loop took
    9-22 s with 2 threads and 0.7-1.8 s with 1 (``docs/benchmarks.md``, "Threads"). Two
    things cause it, and the policy removes both:

    1. **Spinning.** An OpenMP thread that waits for the others keeps its core busy (GNU
       libgomp's ``OMP_WAIT_POLICY=active`` behaviour); when another process holds that core,
       every parallel region waits for a time slice. With ``OMP_WAIT_POLICY=PASSIVE`` the same
       loop took 1.4-1.6 s. :func:`prefer_passive_waiting` sets it (unless the user set it)
       before torch is first imported; the ``dynatools`` and ``trainers`` commands and the test
       suite call it first thing.
    2. **Threads for small work.** Below about :data:`SMALL_WORK` floating-point operations per
       step, starting a team of threads costs more than it saves even on an idle machine, so
       the analyses and training run such problems on one thread (:func:`choose_threads`).

How to choose
    ``DYNATOOLS_THREADS=N`` (environment) or ``--threads N`` (every command) fixes the number
    of threads for everything (``--threads`` also caps numpy's BLAS). Otherwise the work decides: one thread below :data:`SMALL_WORK`,
    else the cores this process may use, shared evenly between worker processes (``cores //
    workers`` each), at most ``OMP_NUM_THREADS`` and, for torch, at most what
    ``torch.get_num_threads()`` was (your ``torch.set_num_threads`` is kept as an upper bound).
    Processes started side by side, such as the test suite's ``pytest -n N`` workers, each get
    ``cores // N`` through ``OMP_NUM_THREADS`` (:func:`share_cores_between_workers`).

Examples
--------
>>> from dynatools.threads import choose_threads, torch_threads
>>> choose_threads(work=64 * 64 * 16)          # a 64-unit network, batch 16: one thread
1
>>> with torch_threads(1):                      # doctest: +SKIP
...     spectrum = lyapunov_spectrum(...)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: The environment variable that fixes the number of threads (``--threads`` sets it).
ENV_VAR = "DYNATOOLS_THREADS"
#: Floating-point operations per step (e.g. batch x units^2 for a recurrent update) below which
#: one thread is used: at this size a step takes about a millisecond on one core, and waking a
#: team of threads for each of its operations costs more than the second core saves.
SMALL_WORK = 2**23


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (threads); found {raw!r}. Unset it or "
                         f"set e.g. {name}=1.")
    return int(raw)


def omp_limit() -> int | None:
    """The thread limit of ``OMP_NUM_THREADS``, read as OpenMP does: the first entry of a list
    such as ``"4,1"`` (nested levels); None if unset or not a number (then OpenMP ignores it too)."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def requested_threads() -> int | None:
    """Threads fixed by the user: ``DYNATOOLS_THREADS`` (``--threads``), else None.

    Raises
    ------
    ValueError
        ``DYNATOOLS_THREADS`` is set to something other than a whole number >= 1.
    """
    return _env_int(ENV_VAR)


def choose_threads(work: float | None = None, *, workers: int = 1) -> int:
    """The number of threads for one computation.

    Parameters
    ----------
    work : float, optional
        Floating-point operations per step of the computation (for a recurrent network,
        ``batch * units**2`` times the number of gates). None: treated as large.
    workers : int, default=1
        Processes that share the cores (each gets ``cores // workers``).

    Returns
    -------
    int
        ``DYNATOOLS_THREADS`` if set; else 1 if ``work < SMALL_WORK``; else the available cores
        divided among ``workers``, at most ``OMP_NUM_THREADS`` if that is set.

    Examples
    --------
    >>> choose_threads(work=1e3)
    1
    """
    fixed = requested_threads()
    if fixed is not None:
        return fixed
    if work is not None and work < SMALL_WORK:
        return 1
    n = max(1, available_cores() // max(1, int(workers)))
    cap = omp_limit()
    return min(n, cap) if cap else n


def step_work(model, batch: int) -> float:
    """Floating-point operations of one step of a torch ``model`` on ``batch`` sequences: two per
    parameter and sequence (every weight enters one multiply-add per step), the ``work`` of
    :func:`choose_threads`.

    Examples
    --------
    >>> import torch
    >>> step_work(torch.nn.Linear(100, 100), batch=8)     # 2 * 8 * (100 * 100 + 100)
    161600.0
    """
    return 2.0 * int(batch) * float(sum(p.numel() for p in model.parameters()))


@contextmanager
def torch_threads(n: int | None = None, *, work: float | None = None) -> Iterator[int]:
    """Run a block with ``n`` torch intra-op threads (default :func:`choose_threads` of ``work``,
    but never more than torch is set to unless ``DYNATOOLS_THREADS`` says so), restoring the
    previous number afterwards.

    Parameters
    ----------
    n : int, optional
        Threads; None chooses by :func:`choose_threads`.
    work : float, optional
        Floating-point operations per step, used when ``n`` is None.

    Yields
    ------
    int
        The number of threads in use.

    Examples
    --------
    >>> import torch
    >>> with torch_threads(1) as n:
    ...     torch.get_num_threads() == n == 1
    True
    """
    import torch

    before = torch.get_num_threads()
    if n is None:
        n = choose_threads(work)
        if requested_threads() is None:     # never more than torch is set to (by you, or its default)
            n = min(n, before)
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1; found {n}.")
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def set_threads(n: int | None) -> None:
    """Fix the threads of this process and of the worker processes it starts (``--threads``):
    sets ``DYNATOOLS_THREADS`` (None leaves the policy to choose), torch's threads and the BLAS
    libraries' (:func:`limit_blas_threads`).

    Examples
    --------
    >>> set_threads(None)
    """
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1; found {n!r}.")
    os.environ[ENV_VAR] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    limit_blas_threads(n)


def limit_blas_threads(n: int) -> None:
    """Cap the threads of the BLAS libraries loaded in this process (numpy's OpenBLAS: the PCA's
    covariance, ``np.linalg``) at ``n``, with ``threadpoolctl``. BLAS reads its thread count when
    it is loaded, before dynatools can act; its idle threads spin like OpenMP's, so on a shared
    machine ``--threads 1`` needs this too (docs/benchmarks.md, "Run analysis").

    Examples
    --------
    >>> limit_blas_threads(1)      # doctest: +SKIP
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n), user_api="blas")   # stays in force after the call


def add_threads_option(subparsers, skip: tuple[str, ...] = ()) -> None:
    """Give every subcommand of an ``argparse`` sub-parser set a ``--threads N`` option that calls
    :func:`set_threads` before the command runs (used by the ``dynatools`` and ``trainers``
    commands; each subcommand's ``func`` default is wrapped).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``parser.add_subparsers()`` returned, after every subcommand was added.
    skip : tuple of str
        Subcommands that compute nothing (e.g. ``list``).
    """
    import functools

    for name, sub in subparsers.choices.items():
        func = sub.get_default("func")
        if name in skip or func is None:
            continue
        sub.add_argument("--threads", type=int, metavar="N",
                         help=f"CPU threads for torch and the FFT (default: ${ENV_VAR} if set, else one "
                              f"thread for small networks and every core for large ones; "
                              f"docs/benchmarks.md, 'Threads')")

        @functools.wraps(func)
        def with_threads(args, func=func):
            set_threads(getattr(args, "threads", None))
            return func(args)

        sub.set_defaults(func=with_threads)


def prefer_passive_waiting() -> bool:
    """Make idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the
    user chose a wait policy.

    OpenMP reads the policy once, when torch loads it, so this takes effect only if torch has
    not been imported yet; the ``dynatools`` and ``trainers`` commands call it before anything
    else. In your own scripts on a shared machine, set ``OMP_WAIT_POLICY=PASSIVE`` in the
    environment (or call this before ``import torch``).

    Returns
    -------
    bool
        Whether the passive policy will apply to torch in this process.
    """
    if "torch" in sys.modules:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"


def share_cores_between_workers(workers: int | None = None) -> int | None:
    """Give this process its share of the cores when it is one of ``workers`` processes that run
    side by side (``pytest -n N``): ``OMP_NUM_THREADS = max(1, cores // workers)``.

    Each pytest-xdist worker is a separate process whose torch would otherwise start one OpenMP
    thread per core, so ``N`` workers ran ``N`` times as many threads as there are cores (issue 17:
    ``pytest -n 12`` on 16 cores did not finish in 150 s; 2 cores serially take about 100 s). ``OMP_NUM_THREADS`` is what
    torch reads for its default thread count when it is first imported (numpy's OpenBLAS and MKL
    read it too, and the worker's subprocesses inherit it), and :func:`choose_threads` caps its
    choice at it, so the policy of this module stays the one rule. The test suite's root
    ``conftest.py`` calls this before torch is imported; if torch is already imported, its thread
    count is lowered to the share as well.

    Parameters
    ----------
    workers : int, optional
        Processes sharing the cores. None: ``PYTEST_XDIST_WORKER_COUNT`` (set by pytest-xdist in
        each worker), else one.

    Returns
    -------
    int or None
        The threads of this process; None where nothing was changed: one worker, or the user set
        ``OMP_NUM_THREADS`` (kept as it is). ``DYNATOOLS_THREADS`` still overrides the policy.

    Raises
    ------
    ValueError
        ``workers`` (or ``PYTEST_XDIST_WORKER_COUNT``) is not a whole number >= 1.

    Examples
    --------
    >>> share_cores_between_workers(1) is None      # a single process keeps torch's default
    True
    """
    if workers is None:
        workers = _env_int("PYTEST_XDIST_WORKER_COUNT") or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1; found {workers!r}.")
    if workers == 1 or os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    share = max(1, available_cores() // workers)
    os.environ["OMP_NUM_THREADS"] = str(share)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > share:
        torch.set_num_threads(share)
    return share


__all__ = ["ENV_VAR", "SMALL_WORK", "available_cores", "requested_threads", "omp_limit", "choose_threads",
           "step_work", "torch_threads", "set_threads", "limit_blas_threads", "add_threads_option",
           "prefer_passive_waiting", "share_cores_between_workers"]
