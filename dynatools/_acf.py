"""FFT kernel for unbiased autocorrelations along the last axis (no labels, no checks)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

#: Bytes of working memory one chunk of series may use (input buffer + spectrum).
CHUNK_BYTES = 128 * 2**20


def n_workers() -> int:
    """Threads for scipy.fft: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


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
    one real FFT zero-padded to ``scipy.fft.next_fast_len(T + max_lag)``, which is the shortest
    length that makes the circular correlation equal to the linear one for lags up to
    ``max_lag``. Series are processed in chunks of about ``CHUNK_BYTES``, so the extra memory does
    not grow with the number of series. The mean is computed in float64; the FFT runs in
    ``work_dtype`` (float32 halves the time; its round-off, ~1e-7 of c_0, is far below the
    statistical error of any autocorrelation estimate).
    """
    T = x.shape[-1]
    lead = x.shape[:-1]
    nfft = sfft.next_fast_len(T + max_lag, real=True)
    work_dtype = np.dtype(work_dtype)
    out = np.empty(lead + (max_lag + 1,), dtype=np.float64)
    denom = (T - np.arange(max_lag + 1)).astype(np.float64)
    if x.ndim == 1:
        x2 = x[None, None, :]
        out2 = out[None, None, :]
    else:
        x2 = x.reshape((-1,) + x.shape[-2:]) if x.ndim > 2 else x[None]
        out2 = out.reshape((-1,) + out.shape[-2:]) if x.ndim > 2 else out[None]
    per_row_bytes = nfft * (work_dtype.itemsize * 3 + 8)
    chunk = max(1, min(x2.shape[1], CHUNK_BYTES // per_row_bytes))
    workers = n_workers()
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is reported by the caller
        _run_chunks(x2, out2, chunk, T, max_lag, nfft, denom, work_dtype, workers, progress)
    return out


def _run_chunks(x2, out2, chunk, T, max_lag, nfft, denom, work_dtype, workers, progress) -> None:
    # Recordings are stored (trial, time, unit), so the series of neighbouring units are
    # interleaved in memory. Their means are taken over the (time, units) view, which reads each
    # cache line once; the block is then copied unit-major into the FFT buffer, where pocketfft is
    # fastest along the last axis.
    time_major = x2.ndim == 3 and x2.shape[1] > 1 and abs(x2.strides[2]) > abs(x2.strides[1])
    buf = np.zeros((chunk, nfft), dtype=work_dtype)
    for a in range(x2.shape[0]):
        for b0 in range(0, x2.shape[1], chunk):
            block = x2[a, b0:b0 + chunk]
            c = block.shape[0]
            if time_major:
                mean = block.T.mean(axis=0, dtype=np.float64)
            else:
                mean = block.mean(axis=-1, dtype=np.float64)
            view = buf[:c]
            view[:, :T] = block
            view[:, :T] -= mean.astype(work_dtype)[:, None]
            spec = sfft.rfft(view, axis=-1, workers=workers)
            power = spec.real * spec.real
            power += spec.imag * spec.imag
            del spec
            corr = sfft.irfft(power, n=nfft, axis=-1, workers=workers)[:, : max_lag + 1]
            out2[a, b0:b0 + c] = corr / denom
            if progress is not None:
                progress(c)
