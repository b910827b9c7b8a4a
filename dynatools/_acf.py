"""FFT kernel for unbiased autocorrelations along the last axis (no labels, no checks)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft

#: Bytes of working memory one chunk of series may use (input buffer + spectrum).
CHUNK_BYTES = 128 * 2**20
#: Time steps per tile of the transposing copy from (time, unit) storage.
TILE = 2048


def n_workers() -> int:
    """Threads for scipy.fft: ``DYNATOOLS_NUM_THREADS`` if set, else the CPUs this process may use."""
    if os.environ.get("DYNATOOLS_NUM_THREADS", "").isdigit() and int(os.environ["DYNATOOLS_NUM_THREADS"]) > 0:
        return int(os.environ["DYNATOOLS_NUM_THREADS"])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def even_fast_len(n: int) -> int:
    """Smallest even length >= n that ``scipy.fft.next_fast_len(..., real=True)`` accepts.

    Even, so that the inverse transform of the power spectrum can be done as a type-I DCT.
    """
    m = sfft.next_fast_len(n, real=True)
    while m % 2:
        m = sfft.next_fast_len(m + 1, real=True)
    return m


def acf_last_axis(
    x: np.ndarray,
    max_lag: int,
    *,
    work_dtype: np.dtype | type = np.float64,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Unbiased autocovariance of every series along the last axis of ``x``.

    For each series ``x_t`` (t = 0..T-1) with its mean removed, returns
    ``c_k = sum_{t=0}^{T-1-k} x_t x_{t+k} / (T - k)`` for ``k = 0..max_lag`` (float64), computed by
    one real FFT zero-padded to the next even fast length >= ``T + max_lag`` (lengths below
    ``T + max_lag`` would make the circular correlation differ from the linear one), the power
    spectrum, and a type-I DCT of it (the inverse FFT of a real even spectrum, at half the cost of
    ``irfft``). Series are processed in chunks of about ``CHUNK_BYTES``, so the extra memory does
    not grow with the number of series. The mean is computed in float64; the FFT runs in
    ``work_dtype`` (float32 halves the time; its round-off, ~1e-7 of c_0, is far below the
    statistical error of any autocorrelation estimate).
    """
    T = x.shape[-1]
    lead = x.shape[:-1]
    nfft = even_fast_len(T + max_lag)
    work_dtype = np.dtype(work_dtype)
    out = np.empty(lead + (max_lag + 1,), dtype=np.float64)
    denom = (T - np.arange(max_lag + 1)).astype(np.float64)
    # view as (outer, series, time) without copying: 1-D and 2-D get new axes; more dims are
    # visited by index over all but the last leading axis
    if x.ndim == 1:
        outer = [(x[None, :], out[None, :])]
    elif x.ndim == 2:
        outer = [(x, out)]
    else:
        outer = [(x[idx], out[idx]) for idx in np.ndindex(*x.shape[:-2])]
    threads = n_workers()
    per_row_bytes = nfft * (work_dtype.itemsize * 3 + 8)
    n_series = outer[0][0].shape[0]
    chunk = max(1, min(n_series, CHUNK_BYTES // (per_row_bytes * threads)))
    tasks = [(a, b0) for a in range(len(outer)) for b0 in range(0, n_series, chunk)]
    threads = min(threads, len(tasks))
    # Recordings are stored (trial, time, unit), so the series of neighbouring units are
    # interleaved in memory. Their means are taken over the (time, units) view, which reads each
    # cache line once; the block is then copied unit-major into the FFT buffer, where pocketfft is
    # fastest along the last axis.
    first = outer[0][0]
    time_major = first.shape[0] > 1 and abs(first.strides[1]) > abs(first.strides[0])
    # float64 data analysed in float32: remove the mean in float64 before rounding, so a large
    # offset does not cost the variance its precision
    upcast_mean = x.dtype.itemsize > work_dtype.itemsize
    local = threading.local()
    lock = threading.Lock()

    def run(task: tuple[int, int]) -> None:
        a, b0 = task
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.zeros((chunk, nfft), dtype=work_dtype)
        xa, outa = outer[a]
        block = xa[b0:b0 + chunk]
        c = block.shape[0]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite input: reported by the caller
            view = buf[:c]
            src = block.T if time_major else block
            if upcast_mean:
                mean = src.mean(axis=0 if time_major else -1, dtype=np.float64)
            if time_major:
                # transpose tile by tile so that source and destination stay in cache
                for t0 in range(0, T, TILE):
                    t1 = min(t0 + TILE, T)
                    view[:, t0:t1] = (src[t0:t1] - mean).T if upcast_mean else src[t0:t1].T
            else:
                view[:, :T] = (block - mean[:, None]) if upcast_mean else block
            if not upcast_mean:
                mean = view[:, :T].mean(axis=-1, dtype=np.float64)
                view[:, :T] -= mean.astype(work_dtype)[:, None]
            spec = sfft.rfft(view, axis=-1, workers=1)
            power = spec.real * spec.real
            power += spec.imag * spec.imag
            del spec
            # the power spectrum is real and even, so its inverse FFT is a type-I DCT of the
            # half spectrum (divided by nfft): same numbers, half the work of irfft
            corr = sfft.dct(power, type=1, axis=-1, workers=1)[:, : max_lag + 1]
            outa[b0:b0 + c] = corr / (denom * nfft)
        if progress is not None:
            with lock:
                progress(c)

    # numpy and pocketfft release the GIL on large arrays, so chunks run in parallel threads;
    # each thread keeps one buffer, so the extra memory is threads x CHUNK_BYTES / threads.
    if threads == 1:
        for task in tasks:
            run(task)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(run, tasks):
                pass
    return out
