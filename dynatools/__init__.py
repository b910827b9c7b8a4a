"""dynatools: measure the dynamics of recurrent neural networks on labeled xarray recordings.

Recordings (schema and I/O)
    from_array, validate, open_recording, save_recording, RecordingWriter, demo_path,
    trial_lengths, select_period (trials of different lengths, task periods)
Timescales
    autocorrelation, fit_timescales, timescales
Dimensionality and connectivity
    pca_dimensionality, participation_ratio, weight_balance, weight_change, weight_conservation,
    weight_spectrum
Dynamics misalignment (skip-connection paper, Fig. 3B)
    activity_nmse
Summaries of one recording (the per-network quantities of the timescale paper's Figs. 4-6)
    analyze_recording, reliable_tau_net
Model-based dynamics (import torch on first use)
    lyapunov_spectrum, hessian_eigenvalues, hessian_density, hessian_trace, gradient_norms, fixed_points
Robustness (import torch on first use)
    relative_accuracy, ablate, ablation_by_tau, perturb

Threads on shared machines (:mod:`dynatools.threads`)
    choose_threads, torch_threads, set_threads; ``DYNATOOLS_THREADS`` / ``--threads``

Importing dynatools registers the ``.dyn`` accessor on xarray objects. It does not import torch
or matplotlib; plotting lives in :mod:`dynatools.plot`. Imported before torch, it makes idle
OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless you set it).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

from dynatools.threads import prefer_passive_waiting as _prefer_passive_waiting  # noqa: E402

_prefer_passive_waiting()  # before torch loads OpenMP: idle threads sleep, not spin (see dynatools.threads)

from dynatools import accessor as _accessor  # noqa: E402,F401  (registers ds.dyn)
from dynatools.recording import (  # noqa: E402
    SCHEMA,
    RecordingError,
    RecordingWriter,
    from_array,
    open_recording,
    save_recording,
    select_period,
    trial_lengths,
    validate,
)
from dynatools.timescales import autocorrelation, fit_timescales, timescales  # noqa: E402
from dynatools.dimensionality import participation_ratio, pca_dimensionality  # noqa: E402
from dynatools.connectivity import (  # noqa: E402
    weight_balance,
    weight_change,
    weight_conservation,
    weight_spectrum,
)
from dynatools.summary import analyze_recording, reliable_tau_net  # noqa: E402
from dynatools.misalignment import activity_nmse  # noqa: E402
from dynatools.spectra import power_spectrum  # noqa: E402


_LAZY = {
    "lyapunov_spectrum": "dynatools.lyapunov",
    "hessian_eigenvalues": "dynatools.hessian",
    "hessian_density": "dynatools.hessian",
    "hessian_trace": "dynatools.hessian",
    "gradient_norms": "dynatools.gradients",
    "relative_accuracy": "dynatools.robustness",
    "ablate": "dynatools.robustness",
    "ablation_by_tau": "dynatools.robustness",
    "perturb": "dynatools.robustness",
    "fixed_points": "dynatools.fixed_points",
}


def __getattr__(name: str):
    """Model-based analyses are imported on first use, so ``import dynatools`` stays torch-free."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dynatools' has no attribute {name!r}")


def demo_path() -> Path:
    """Path of the shipped demo recording (``dynatools/data/demo_timescales.nc``).

    It is installed with the package (wheel, regular or editable install, source checkout) and found
    through :mod:`importlib.resources`; set the environment variable ``DYNATOOLS_DATASETS`` to a
    folder holding ``demo_timescales.nc`` to use that copy instead. Regenerate it with
    ``python datasets/make_demo_recording.py``.

    Returns
    -------
    pathlib.Path
        The recording's path.

    Example
    -------
    >>> demo_path().name
    'demo_timescales.nc'
    """
    from dynatools.data import shipped_path

    return shipped_path("demo_timescales.nc")


__all__ = [
    # recordings
    "SCHEMA",
    "RecordingError",
    "from_array",
    "validate",
    "open_recording",
    "save_recording",
    "RecordingWriter",
    "demo_path",
    "trial_lengths",
    "select_period",
    # timescales
    "autocorrelation",
    "fit_timescales",
    "timescales",
    # dimensionality and connectivity
    "pca_dimensionality",
    "participation_ratio",
    "weight_balance",
    "weight_change",
    "weight_conservation",
    "weight_spectrum",
    # dynamics misalignment
    "activity_nmse",
    # power spectra
    "power_spectrum",
    # summaries of one recording
    "analyze_recording",
    "reliable_tau_net",
    # model-based dynamics (lazy: import torch when used)
    "lyapunov_spectrum",
    "hessian_eigenvalues",
    "hessian_density",
    "hessian_trace",
    "gradient_norms",
    "fixed_points",
    # robustness (lazy)
    "relative_accuracy",
    "ablate",
    "ablation_by_tau",
    "perturb",
    "__version__",
]
