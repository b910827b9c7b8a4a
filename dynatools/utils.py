"""Public utilities for code built on dynatools (the ``trainers`` package uses these too).

Argument checks
    check_choice, check_positive_int, check_finite_parameters, nonfinite_names
Atomic files
    write_atomic (temporary file beside the target, fsync, rename), write_netcdf_atomic
Result caches
    file_stamp, cache_key, is_cached, cached

Every check raises ``ValueError`` or ``TypeError`` naming the argument, what was expected, what
was found, and the fix. Atomic writes never leave a partial file under the final name, even when
the process is killed.

Examples
--------
>>> from dynatools.utils import check_choice, check_positive_int
>>> check_choice("optimizer", "sgd", ("sgd", "adam"))
'sgd'
>>> check_positive_int("batch", 0)
Traceback (most recent call last):
...
ValueError: batch must be an integer >= 1; found 0.
"""

from __future__ import annotations

from dynatools._atomic import write_atomic
from dynatools._cache import cache_key, cached, file_stamp
from dynatools._cache import is_valid as is_cached
from dynatools._validation import (
    check_choice,
    check_finite_parameters,
    check_positive_int,
    nonfinite_names,
)
from dynatools.recording import write_netcdf_atomic

__all__ = [
    "check_choice", "check_positive_int", "check_finite_parameters", "nonfinite_names",
    "write_atomic", "write_netcdf_atomic",
    "file_stamp", "cache_key", "is_cached", "cached",
]
