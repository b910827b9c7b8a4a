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
    """Threads for scipy.fft: the CPUs this process may use."""
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
    if x.ndim == 1:
        x2 = x[None, None, :]
        out2 = out[None, None, :]
    else:
        x2 = x.reshape((-1,) + x.shape[-2:]) if x.ndim > 2 else x[None]
        out2 = out.reshape((-1,) + out.shape[-2:]) if x.ndim > 2 else out[None]
    threads = n_workers()
    per_row_bytes = nfft * (work_dtype.itemsize * 3 + 8)
    chunk = max(1, min(x2.shape[1], CHUNK_BYTES // (per_row_bytes * threads)))
    tasks = [(a, b0) for a in range(x2.shape[0]) for b0 in range(0, x2.shape[1], chunk)]
    threads = min(threads, len(tasks))
    # Recordings are stored (trial, time, unit), so the series of neighbouring units are
    # interleaved in memory. Their means are taken over the (time, units) view, which reads each
    # cache line once; the block is then copied unit-major into the FFT buffer, where pocketfft is
    # fastest along the last axis.
    time_major = x2.ndim == 3 and x2.shape[1] > 1 and abs(x2.strides[2]) > abs(x2.strides[1])
    local = threading.local()
    lock = threading.Lock()

    def run(task: tuple[int, int]) -> None:
        a, b0 = task
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.zeros((chunk, nfft), dtype=work_dtype)
        block = x2[a, b0:b0 + chunk]
        c = block.shape[0]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite input: reported by the caller
            view = buf[:c]
            if time_major:
                # transpose tile by tile so that source and destination stay in cache
                src = block.T
                for t0 in range(0, T, TILE):
                    t1 = min(t0 + TILE, T)
                    view[:, t0:t1] = src[t0:t1].T
            else:
                view[:, :T] = block
            mean = view[:, :T].mean(axis=-1, dtype=np.float64)
            view[:, :T] -= mean.astype(work_dtype)[:, None]
            spec = sfft.rfft(view, axis=-1, workers=1)
            power = spec.real * spec.real
            power += spec.imag * spec.imag
            del spec
            # the power spectrum is real and even, so its inverse FFT is a type-I DCT of the
            # half spectrum (divided by nfft): same numbers, half the work of irfft
            corr = sfft.dct(power, type=1, axis=-1, workers=1)[:, : max_lag + 1]
            out2[a, b0:b0 + c] = corr / (denom * nfft)
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
