"""Connectivity statistics of recurrent weight matrices.

* :func:`weight_balance`: per unit, the incoming positive and negative weights and their balance
  (timescale paper, ``shared/seeds/000_*``, Sec. 4.2 and Fig. 6a).
* :func:`weight_change`: how far training moved the recurrent weights (multi-tau poster,
  ``001_*``: "size of the recurrent weight change").
* :func:`weight_conservation`: variance of the normalised weight change between corresponding
  units of consecutive modules (modular-growth paper, ``004_*``, Sec. 4 and Fig. 5c).
* :func:`weight_spectrum`: eigenvalues and spectral radius.

Weights are taken from a plain matrix, a DataArray ``(unit, unit_pre)``, a recording that carries
``W_rec`` (schema v1), or a model with ``recording_weights()`` (every ``trainers`` model). Row i
holds the weights *into* unit i (``h_i <- sum_j W_ij h_j``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr


def as_weights(source: Any, name: str = "W_rec") -> np.ndarray:
    """A square float64 weight matrix from a matrix, DataArray, recording or model.

    Parameters
    ----------
    source : array, DataArray, Dataset or model
        A Dataset must carry the variable ``name``; a model must have ``recording_weights()``.
    name : str, default="W_rec"

    Raises
    ------
    ValueError
        The recording has no weights, the matrix is not square, or it holds NaN/inf.
    """
    if isinstance(source, xr.Dataset):
        if name not in source.data_vars:
            raise ValueError(f"the recording has no {name!r} variable (found: {sorted(map(str, source.data_vars))}); "
                             f"record it with weights (trainers' record() stores W_rec) or pass the matrix itself.")
        W = _rows_are_units(source[name], name).values
    elif hasattr(source, "recording_weights"):
        weights = source.recording_weights()
        if name not in weights:
            raise ValueError(f"the model's recording_weights() has no {name!r} (has {sorted(weights)}).")
        W = weights[name]
    else:
        W = _rows_are_units(source, name).values if isinstance(source, xr.DataArray) else source
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric matrix; found {type(source).__name__}.") from exc
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{name} must be a square (unit, unit_pre) matrix; found shape {W.shape}.")
    if W.size == 0:
        raise ValueError(f"{name} is empty (shape {W.shape}); expected a square (unit, unit_pre) matrix of at "
                         f"least one unit. Pass the network's recurrent weights (a recording's {name!r}, or "
                         f"model.recording_weights()[{name!r}]).")
    if not np.all(np.isfinite(W)):
        raise ValueError(f"{name} contains NaN or inf; the network's weights diverged or the file is corrupted.")
    return W


def _rows_are_units(W: xr.DataArray, name: str) -> xr.DataArray:
    """A labeled matrix with rows = postsynaptic ``unit``, columns = presynaptic ``unit_pre``
    (transposed if stored the other way round); other dimension names are refused."""
    if set(W.dims) == {"unit", "unit_pre"}:
        return W.transpose("unit", "unit_pre")
    if W.ndim > 2 and {"unit", "unit_pre"} <= set(W.dims):
        extra = [str(d) for d in W.dims if d not in ("unit", "unit_pre")]
        raise ValueError(f"{name} has dims {tuple(map(str, W.dims))}: the weight functions take one network's "
                         f"(unit, unit_pre) matrix, without batch dims. Select one, e.g. "
                         f"{name}.isel({extra[0]}=0), and loop over {extra} (docs/api.md).")
    if W.ndim == 2 and ("unit" in W.dims or "unit_pre" in W.dims):
        raise ValueError(f"{name} has dims {W.dims}; expected ('unit', 'unit_pre') (rows: the receiving "
                         f"unit, columns: the sending unit), as in the recording schema. Rename the dims.")
    return W


def _unit_coord(source: Any, n: int) -> np.ndarray:
    if isinstance(source, (xr.Dataset, xr.DataArray)) and "unit" in source.coords and source.sizes.get("unit") == n:
        return source["unit"].values
    return np.arange(n)


def weight_balance(W: Any, *, exclude_self: bool = True, name: str = "W_rec") -> xr.Dataset:
    """Incoming positive and negative weights of every unit and their balance (Fig. 6a).

    Timescale paper Sec. 4.2: multi-head networks keep the total incoming positive and negative
    weights nearly equal (balanced); single-head networks become dominated by inhibition as N grows.

    Parameters
    ----------
    W : array (unit, unit_pre), DataArray, recording with ``W_rec``, or model
        Row i holds the weights into unit i.
    exclude_self : bool, default=True
        Leave out the diagonal (self-connections are fixed at zero in the timescale paper's
        networks, so they would only dilute the means).
    name : str, default="W_rec"
        The variable read from a recording or a model.

    Returns
    -------
    xarray.Dataset
        Over ``unit``: ``positive_sum`` (sum of the positive incoming weights), ``negative_sum``
        (sum of the negative ones, <= 0), ``positive_mean`` and ``negative_mean`` (means over the
        positive, resp. negative, entries; NaN if there are none), ``mean_incoming`` (mean of all
        incoming weights, the quantity of Fig. 6a), ``net`` (= positive_sum + negative_sum) and
        ``balance`` = net / (positive_sum - negative_sum), in [-1, 1] (0 = balanced, -1 = only
        inhibition; NaN for a unit without incoming weights). Attrs hold the network-wide means
        (NaNs skipped).

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.connectivity import weight_balance
    >>> W = np.array([[0.0, 2.0, -1.0], [1.0, 0.0, -1.0], [-3.0, -1.0, 0.0]])
    >>> weight_balance(W).balance.values
    array([ 0.33333333,  0.        , -1.        ])
    """
    Wm = as_weights(W, name)
    n = Wm.shape[0]
    mask = ~np.eye(n, dtype=bool) if exclude_self else np.ones((n, n), dtype=bool)
    pos = np.where(mask & (Wm > 0), Wm, 0.0)
    neg = np.where(mask & (Wm < 0), Wm, 0.0)
    n_pos, n_neg = (pos > 0).sum(1), (neg < 0).sum(1)
    pos_sum, neg_sum = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_mean = np.where(n_pos > 0, pos_sum / np.maximum(n_pos, 1), np.nan)
        neg_mean = np.where(n_neg > 0, neg_sum / np.maximum(n_neg, 1), np.nan)
        total = pos_sum - neg_sum
        balance = np.where(total > 0, (pos_sum + neg_sum) / np.where(total > 0, total, 1.0), np.nan)
    mean_incoming = np.where(mask, Wm, 0.0).sum(1) / mask.sum(1).clip(min=1)
    ds = xr.Dataset(
        {"positive_sum": ("unit", pos_sum), "negative_sum": ("unit", neg_sum),
         "positive_mean": ("unit", pos_mean), "negative_mean": ("unit", neg_mean),
         "mean_incoming": ("unit", mean_incoming), "net": ("unit", pos_sum + neg_sum),
         "balance": ("unit", balance)},
        coords={"unit": _unit_coord(W, n)},
        attrs={"exclude_self": int(exclude_self), "weights": name,
               "mean_positive_sum": float(pos_sum.mean()), "mean_negative_sum": float(neg_sum.mean()),
               "mean_incoming": float(mean_incoming.mean()),
               "mean_balance": float(np.nanmean(balance)) if np.isfinite(balance).any() else float("nan")},
    )
    ds["balance"].attrs["long_name"] = "(sum positive + sum negative) / (sum positive - sum negative)"
    return ds


def weight_change(W_before: Any, W_after: Any, *, name: str = "W_rec") -> xr.Dataset:
    """How far the recurrent weights moved between two points of training (multi-tau poster).

    Parameters
    ----------
    W_before, W_after : array, DataArray, recording or model
        The same network before and after (e.g. at initialisation and after training).
    name : str, default="W_rec"

    Returns
    -------
    xarray.Dataset
        ``incoming_change`` over ``unit`` (L2 norm of row i of the change); attrs
        ``frobenius`` (``||W_after - W_before||_F``), ``relative`` (that over
        ``||W_before||_F``), ``mean_abs`` (mean absolute change per weight) and ``max_abs``.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.connectivity import weight_change
    >>> weight_change(np.eye(2), 2 * np.eye(2)).attrs["frobenius"]   # sqrt(1 + 1)
    1.4142135623730951
    """
    A, B = as_weights(W_before, name), as_weights(W_after, name)
    if A.shape != B.shape:
        raise ValueError(f"W_before has shape {A.shape} but W_after {B.shape}: they must be the same "
                         f"network (same number of units).")
    D = B - A
    norm_before = float(np.linalg.norm(A))
    frob = float(np.linalg.norm(D))
    return xr.Dataset(
        {"incoming_change": ("unit", np.linalg.norm(D, axis=1))},
        coords={"unit": _unit_coord(W_after, A.shape[0])},
        attrs={"frobenius": frob, "relative": frob / norm_before if norm_before > 0 else float("inf"),
               "mean_abs": float(np.abs(D).mean()), "max_abs": float(np.abs(D).max()), "weights": name},
    )


def weight_conservation(modules: Sequence[Any] | xr.DataArray | xr.Dataset, *, module_dim: str = "module",
                        name: str = "W_rec", blocks: Sequence[str] = ("W_R", "W_FF"),
                        exclude_self: bool = True) -> xr.DataArray | xr.Dataset:
    r"""Variance of the normalised weight change between consecutive modules (004, Fig. 5c).

    Modular-growth paper (``shared/seeds/004_*``), "Recurrent vs Feedforward Connections": each
    module's weights are normalised by their own mean and standard deviation,
    :math:`\overline{W} = (W - \langle W \rangle) / \sigma_W`; the change between corresponding
    neurons i, j of consecutive modules is
    :math:`\Delta\overline{W}_{ij} = \overline{W}^m_{ij} - \overline{W}^{m-1}_{ij}`, and its
    variance over all (i, j), :math:`\sigma^2_{\Delta\overline{W}}`, measures how little the
    weights were conserved (lower = more conserved; 0 for an exact or affine copy).

    Parameters
    ----------
    modules : sequence of arrays of one shape, DataArray with dim ``module_dim``, or Dataset
        - the corresponding weight blocks of modules 0, 1, ... (e.g. each module's recurrent
          block ``W_R``, or its feed-forward block ``W_FF``); they need not be square;
        - a modular recording (or any Dataset) with the recurrent weights ``name`` ``(unit,
          unit_pre)`` and a ``module_dim`` coordinate on ``unit`` (``trainers.record`` of a
          ``ModularRNN`` stores both): each module's recurrent block :math:`W^R_m` (rows and
          columns of module m) and feed-forward block :math:`W^{FF}_m` (rows of module m,
          columns of module m - 1; 004 Eq. 4) are cut out of the matrix and compared. Unit i of
          module m corresponds to unit i of module m - 1 in the order of the ``unit`` dim; the
          modules are taken in ascending order of their labels.
    module_dim : str, default="module"
        The DataArray's module dim, or the Dataset's per-unit module coordinate.
    name : str, default="W_rec"
        Dataset only: the recurrent weight variable.
    blocks : sequence of {"W_R", "W_FF"}, default=("W_R", "W_FF")
        Dataset only: the blocks compared. ``W_R`` needs 2 modules, ``W_FF`` 3 (module 0 has no
        feed-forward block, so the first change is from module 1's to module 2's).
    exclude_self : bool, default=True
        Dataset only: leave out the diagonal of the recurrent blocks (004's networks have no
        self-connections: those entries are fixed at zero and are not weights).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Blocks given: ``variance`` over ``module`` = 1, 2, ... (the change from module m-1 to
        m; the later module's label when a DataArray with a ``module`` coordinate is given);
        attrs ``mean``.
        Dataset given: a Dataset over ``module`` (the later module's label of each change) with
        ``W_R`` (the change between the recurrent blocks of modules m-1 and m, from the second
        module on) and ``W_FF`` (between the feed-forward blocks of modules m-1 and m, from the
        third module on; NaN at the second), as requested by ``blocks``; attrs ``mean_W_R``,
        ``mean_W_FF``, ``module_size``, ``exclude_self``, ``weights``.

    Raises
    ------
    ValueError
        Fewer than 2 modules (3 for ``W_FF``), blocks of different shapes, a block whose weights
        are all equal; for a Dataset also: no weights ``name``, no ``module_dim`` coordinate on
        ``unit``, or modules of unequal size.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.connectivity import weight_conservation
    >>> W0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> weight_conservation([W0, 2 * W0 + 1]).values   # an affine copy is perfectly conserved
    array([0.])

    A modular recording: three modules of two units whose blocks are exact copies.

    >>> import xarray as xr
    >>> R, F = np.array([[0.0, 1.0], [-2.0, 0.0]]), np.array([[0.5, -1.0], [2.0, 3.0]])
    >>> Z = np.zeros((2, 2))
    >>> W = np.block([[R, Z, Z], [F, R, Z], [Z, F, R]])
    >>> rec = xr.Dataset({"W_rec": (("unit", "unit_pre"), W)},
    ...                  coords={"unit": np.arange(6), "module": ("unit", [0, 0, 1, 1, 2, 2])})
    >>> res = weight_conservation(rec)
    >>> res.W_R.values, res.W_FF.values
    (array([0., 0.]), array([nan,  0.]))
    """
    if isinstance(modules, xr.Dataset):
        return _conservation_of_recording(modules, module_dim=module_dim, name=name, blocks=blocks,
                                          exclude_self=exclude_self)
    labels = None
    if isinstance(modules, xr.DataArray):
        if module_dim not in modules.dims:
            raise ValueError(f"dimension {module_dim!r} not found in {tuple(modules.dims)}; pass module_dim=.")
        parts = [np.asarray(modules.isel({module_dim: i}).values, dtype=np.float64)
                 for i in range(modules.sizes[module_dim])]
        if module_dim in modules.coords:
            labels = modules[module_dim].values[1:]
    else:
        parts = [np.asarray(b, dtype=np.float64) for b in modules]
    var = _conservation_variance(parts)
    return xr.DataArray(var, dims=[module_dim],
                        coords={module_dim: labels if labels is not None else np.arange(1, len(parts))},
                        name="variance", attrs={"mean": float(var.mean()),
                                                "long_name": "variance of the normalised weight change"})


def _conservation_variance(blocks: list[np.ndarray]) -> np.ndarray:
    """``var(W_bar^m - W_bar^(m-1))`` for m = 1..len(blocks)-1, each block normalised by its own
    mean and std (004 Fig. 5c), with the checks of :func:`weight_conservation`."""
    if len(blocks) < 2:
        raise ValueError(f"weight_conservation needs at least 2 modules; found {len(blocks)}.")
    shapes = {b.shape for b in blocks}
    if len(shapes) != 1:
        raise ValueError(f"the modules' weight blocks have different shapes {sorted(shapes)}; pass the "
                         f"corresponding blocks (same units in each module).")
    if blocks[0].size < 2:
        raise ValueError(f"the modules' weight blocks have shape {blocks[0].shape}; expected at least 2 weights "
                         f"per block (a std needs 2). Pass each module's weight block (e.g. its W_R).")
    normalised = []
    for m, b in enumerate(blocks):
        if not np.all(np.isfinite(b)):
            raise ValueError(f"module {m}'s weights contain NaN or inf.")
        sd = b.std()
        if not sd > 0:
            raise ValueError(f"module {m}'s weights are all equal; they cannot be normalised by their std.")
        normalised.append((b - b.mean()) / sd)
    return np.array([np.var(normalised[m] - normalised[m - 1]) for m in range(1, len(blocks))])


_BLOCKS = ("W_R", "W_FF")


def _conservation_of_recording(ds: xr.Dataset, *, module_dim: str, name: str, blocks: Sequence[str],
                               exclude_self: bool) -> xr.Dataset:
    """:func:`weight_conservation` of a Dataset with ``name`` (unit, unit_pre) and a per-unit
    ``module_dim`` coordinate: the W^R and W^FF blocks of every module, compared."""
    if isinstance(blocks, str):
        blocks = (blocks,)
    blocks = tuple(blocks)
    unknown = [b for b in blocks if b not in _BLOCKS]
    if unknown or not blocks:
        raise ValueError(f"blocks={blocks!r}: choose one or both of {list(_BLOCKS)}.")
    W = as_weights(ds, name)
    if module_dim not in ds.coords or tuple(ds[module_dim].dims) != ("unit",):
        found = f"dims {tuple(ds[module_dim].dims)}" if module_dim in ds.coords else "none"
        raise ValueError(f"weight_conservation of a recording needs a {module_dim!r} coordinate on 'unit' (the "
                         f"module of every unit; found {found}). Record a modular network (trainers.record of a "
                         f"ModularRNN stores it), assign it (ds.assign_coords({module_dim}=('unit', labels))), or "
                         f"pass the modules' weight blocks as a list.")
    module = np.asarray(ds[module_dim].values)
    if "unit_pre" in ds.coords and not np.array_equal(ds["unit_pre"].values, ds["unit"].values):
        raise ValueError(f"{name}'s columns (unit_pre {ds['unit_pre'].values.tolist()[:6]}...) are not in the order "
                         f"of its rows (unit {ds['unit'].values.tolist()[:6]}...); reorder them "
                         f"(ds.reindex(unit_pre=ds.unit.values)) so that block (m, m-1) is module m's W^FF.")
    labels, sizes = np.unique(module, return_counts=True)
    if len(set(sizes.tolist())) != 1:
        raise ValueError(f"the modules have unequal sizes ({dict(zip(labels.tolist(), sizes.tolist()))} units); "
                         f"corresponding weights of consecutive modules need modules of one size.")
    need = 3 if "W_FF" in blocks else 2
    if len(labels) < need:
        hint = " Pass blocks=('W_R',) to compare only the recurrent blocks." if len(labels) == 2 else ""
        raise ValueError(f"weight_conservation compares consecutive modules; the recording has {len(labels)} "
                         f"module(s) ({labels.tolist()}), and {'W_FF' if need == 3 else 'W_R'} needs at least "
                         f"{need} (module 0 has no feed-forward block).{hint}")
    idx = [np.flatnonzero(module == lab) for lab in labels]
    size = int(sizes[0])
    off = ~np.eye(size, dtype=bool) if exclude_self else np.ones((size, size), dtype=bool)
    if off.sum() < 2:
        raise ValueError(f"modules of {size} unit(s) have {int(off.sum())} recurrent weight(s) (diagonal "
                         f"{'excluded' if exclude_self else 'included'}); a std needs 2.")
    out = xr.Dataset(coords={module_dim: labels[1:]})
    attrs: dict[str, Any] = {"module_size": size, "exclude_self": int(exclude_self), "weights": name}
    if "W_R" in blocks:
        rec_blocks = [W[np.ix_(i, i)][off] for i in idx]
        out["W_R"] = (module_dim, _conservation_variance(rec_blocks))
        out["W_R"].attrs["long_name"] = "variance of the normalised change of the recurrent weights W^R"
        attrs["mean_W_R"] = float(out["W_R"].mean())
    if "W_FF" in blocks:
        ff_blocks = [W[np.ix_(idx[m], idx[m - 1])] for m in range(1, len(idx))]
        var = np.concatenate([[np.nan], _conservation_variance(ff_blocks)])
        out["W_FF"] = (module_dim, var)
        out["W_FF"].attrs["long_name"] = "variance of the normalised change of the feed-forward weights W^FF"
        attrs["mean_W_FF"] = float(np.nanmean(var))
    out[module_dim].attrs["description"] = "the later module m of each change m-1 -> m"
    out.attrs = attrs
    return out


def weight_spectrum(W: Any, *, name: str = "W_rec") -> xr.Dataset:
    """Eigenvalues of the weight matrix, sorted by decreasing magnitude, and its spectral radius.

    Returns
    -------
    xarray.Dataset
        ``real_part``, ``imag_part`` and ``modulus`` over ``eigenvalue`` (netCDF has no complex
        type); attrs ``spectral_radius``.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.connectivity import weight_spectrum
    >>> round(weight_spectrum(np.array([[0.0, -2.0], [2.0, 0.0]])).attrs["spectral_radius"], 12)
    2.0
    """
    lam = np.linalg.eigvals(as_weights(W, name))
    lam = lam[np.argsort(-np.abs(lam), kind="stable")]
    return xr.Dataset({"real_part": ("eigenvalue", lam.real), "imag_part": ("eigenvalue", lam.imag),
                       "modulus": ("eigenvalue", np.abs(lam))},
                      coords={"eigenvalue": np.arange(len(lam))},
                      attrs={"spectral_radius": float(np.abs(lam).max()), "weights": name})


__all__ = ["weight_balance", "weight_change", "weight_conservation", "weight_spectrum", "as_weights"]
