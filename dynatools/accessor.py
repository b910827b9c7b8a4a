"""The ``ds.dyn`` / ``da.dyn`` accessor: a thin forwarder to the module functions.

>>> import dynatools as dt
>>> rec = dt.open_recording(dt.demo_path())
>>> res = rec.dyn.timescales()
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from dynatools.connectivity import weight_balance
from dynatools.dimensionality import participation_ratio, pca_dimensionality
from dynatools.recording import save_recording, select_period, validate
from dynatools.timescales import autocorrelation, fit_timescales, timescales


class _DynAccessor:
    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    def autocorrelation(self, **kwargs: Any) -> xr.DataArray:
        """:func:`dynatools.autocorrelation` of this object."""
        return autocorrelation(self._obj, **kwargs)

    def timescales(self, **kwargs: Any) -> xr.Dataset:
        """:func:`dynatools.timescales` of this object."""
        return timescales(self._obj, **kwargs)

    def pca_dimensionality(self, threshold: float = 0.9, **kwargs: Any) -> xr.Dataset:
        """:func:`dynatools.pca_dimensionality` of this object."""
        return pca_dimensionality(self._obj, threshold, **kwargs)

    def participation_ratio(self, **kwargs: Any) -> xr.DataArray:
        """:func:`dynatools.participation_ratio` of this object."""
        return participation_ratio(self._obj, **kwargs)


@xr.register_dataset_accessor("dyn")
class DatasetDynAccessor(_DynAccessor):
    """``ds.dyn``: analyses of a recording."""

    def validate(self) -> xr.Dataset:
        """:func:`dynatools.validate` this recording."""
        return validate(self._obj)

    def weight_balance(self, **kwargs: Any) -> xr.Dataset:
        """:func:`dynatools.weight_balance` of this recording's ``W_rec``."""
        return weight_balance(self._obj, **kwargs)

    def select_period(self, period, **kwargs: Any) -> xr.Dataset:
        """:func:`dynatools.select_period` of this recording."""
        return select_period(self._obj, period, **kwargs)

    def save(self, path, **kwargs: Any):
        """:func:`dynatools.save_recording` this recording."""
        return save_recording(self._obj, path, **kwargs)


@xr.register_dataarray_accessor("dyn")
class DataArrayDynAccessor(_DynAccessor):
    """``da.dyn``: analyses of an activity DataArray; ``fit_timescales`` of an autocorrelation."""

    def fit_timescales(self, **kwargs: Any) -> xr.Dataset:
        """:func:`dynatools.fit_timescales` of this autocorrelation."""
        return fit_timescales(self._obj, **kwargs)
