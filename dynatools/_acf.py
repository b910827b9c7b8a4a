"""FFT kernel for unbiased autocorrelations along the last axis (no labels, no checks)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft

#: Bytes of working memory one chunk of series may use (input buffer + spectrum).
CHUNK_BYTES = 128 * 2**20
#: Time steps per tile of the transposing copy from (time, unit) storage.
TILE = 2048
#: Range of a series (max - min) that the FFT of each precision takes without rescaling: squares
#: and sums of squares over 1e7 steps stay far from underflow and overflow. Outside it the series
#: is rescaled by a power of two (exact) before the FFT.
SAFE_RANGE = {4: (2.0**-20, 2.0**20), 8: (2.0**-300, 2.0**300)}
#: A series is constant when its range is at most this many units in the last place of its
#: largest absolute value (in the data's precision).
CONSTANT_ULPS = 2


def n_workers() -> int:
    """Threads for scipy.fft: ``DYNATOOLS_THREADS`` if set, else the CPUs this process may use (at
    most ``OMP_NUM_THREADS``), by :func:`dynatools.threads.choose_threads`."""
    from dynatools.threads import choose_threads

    return choose_threads(None)


def even_fast_len(n: int) -> int:
    """Smallest even length >= n that ``scipy.fft.next_fast_len(..., real=True)`` accepts.

    Even, so that the inverse transform of the power spectrum can be done as a type-I DCT.
    """
    m = sfft.next_fast_len(n, real=True)
    while m % 2:
        m = sfft.next_fast_len(m + 1, real=True)
    return m


def _range_checks(hi: np.ndarray, lo: np.ndarray, eps: float, safe_lo: float, safe_hi: float):
    """Per series, from its largest and smallest value (float64): finite, constant, and the power
    of two (0: none) whose inverse brings its range near 1 when it is outside ``[safe_lo, safe_hi]``."""
    finite = np.isfinite(hi) & np.isfinite(lo)
    with np.errstate(invalid="ignore"):
        spread = 0.5 * hi - 0.5 * lo                      # half the range: no overflow at float64's largest
        level = np.maximum(np.abs(hi), np.abs(lo))
        constant = finite & (spread <= 0.5 * CONSTANT_ULPS * eps * level)
        varying = finite & ~constant
        _, exponent = np.frexp(np.where(varying, 2.0 * spread, 1.0))
        outside = varying & ((2.0 * spread < safe_lo) | (2.0 * spread > safe_hi))
    # |exponent| <= 1000 keeps 2**exponent finite (float64 subnormals: scaled up to about 1e-8)
    return finite, constant, np.clip(np.where(outside, exponent, 0), -1000, 1000)


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

    The result does not depend on the units of the data. Each series' range is read first (in
    float64); a series whose range is outside ``SAFE_RANGE`` of the FFT's precision (float32:
    2**-20 to 2**20) is multiplied by a power of two that brings it near 1 before the FFT, and
    the result by the inverse square. Powers of two are exact, so in-range data give bitwise the
    same numbers as without scaling, and float32 data at 1e-30 or 1e30 give the autocovariance
    of the same values computed in float64 (to float32 round-off), with no underflow to zero and
    no overflow to inf in the squares.

    Series whose range is at most ``CONSTANT_ULPS`` units in the last place of their level
    (largest absolute value; 0 for all zeros) are constant: their output is exactly 0, whatever
    their scale (a constant unit at 1e-26 is constant; a varying one is not). Series holding NaN
    or inf give NaN at every lag.
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
    eps = float(np.finfo(x.dtype).eps) if np.issubdtype(x.dtype, np.floating) else float(np.finfo(np.float64).eps)
    safe_lo, safe_hi = SAFE_RANGE.get(work_dtype.itemsize, SAFE_RANGE[4])
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
                # data in a wider type than the FFT's: range and mean in float64 from the source,
                # so that rescaling happens before rounding
                hi = src.max(axis=0 if time_major else -1).astype(np.float64)
                lo = src.min(axis=0 if time_major else -1).astype(np.float64)
            else:
                # same type: an exact copy first; its rows are contiguous, so the range is cheap
                if time_major:
                    # transpose tile by tile so that source and destination stay in cache
                    for t0 in range(0, T, TILE):
                        t1 = min(t0 + TILE, T)
                        view[:, t0:t1] = src[t0:t1].T
                else:
                    view[:, :T] = block
                # two passes over contiguous rows: about 2% of the FFT's time
                hi = view[:, :T].max(axis=-1).astype(np.float64)
                lo = view[:, :T].min(axis=-1).astype(np.float64)
            finite, constant, exponent = _range_checks(hi, lo, eps, safe_lo, safe_hi)
            scaled = bool(exponent.any())
            if upcast_mean:
                mean = src.mean(axis=0 if time_major else -1, dtype=np.float64)
                if time_major:
                    for t0 in range(0, T, TILE):
                        t1 = min(t0 + TILE, T)
                        view[:, t0:t1] = (src[t0:t1] - mean).T
                else:
                    view[:, :T] = block - mean[:, None]
                if scaled:   # in float64, before rounding to the FFT's type; powers of two are exact
                    rows = np.flatnonzero(exponent)
                    view[rows, :T] = ((block[rows].T if time_major else block[rows]) - mean[rows, None]) \
                        * np.ldexp(1.0, -exponent[rows])[:, None]
            else:
                if scaled:
                    rows = np.flatnonzero(exponent)
                    # powers of two: exact, also from and to subnormal float32 values
                    view[rows, :T] = view[rows, :T].astype(np.float64) * np.ldexp(1.0, -exponent[rows])[:, None]
                mean = view[:, :T].mean(axis=-1, dtype=np.float64)
                view[:, :T] -= mean.astype(work_dtype)[:, None]
            spec = sfft.rfft(view, axis=-1, workers=1)
            power = spec.real * spec.real
            power += spec.imag * spec.imag
            del spec
            # the power spectrum is real and even, so its inverse FFT is a type-I DCT of the
            # half spectrum (divided by nfft): same numbers, half the work of irfft
            corr = sfft.dct(power, type=1, axis=-1, workers=1)[:, : max_lag + 1]
            result = corr / (denom * nfft)
            if scaled:
                result *= np.ldexp(1.0, 2 * exponent)[:, None]
            result[constant] = 0.0
            result[~finite] = np.nan
            outa[b0:b0 + c] = result
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
