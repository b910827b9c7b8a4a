"""Import the networks published by the timescale paper's authors (LevinaLab/rnn_timescale_public).

Their checkpoints (folder ``trained_models/`` of https://github.com/LevinaLab/rnn_timescale_public)
hold a dict with
a ``state_dict`` of their ``RNN_Stack`` model: ``parameterlist.0`` (tau), ``modulelist.0``
(input layer), ``modulelist.1`` (recurrent layer, diagonal zeroed in every forward pass) and
``modulelist.2...`` (readout heads, Linear(n, 2) each). Their dynamics are Eq. 1 (nonlinearity
outside) with PyTorch's default leaky-ReLU slope 0.01, inputs in {0, 1}.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from trainers.checkpoint import safe_load
from trainers.models import LeakyRNN

#: Where the authors' trained networks are published (folder ``trained_models/``).
AUTHORS_REPOSITORY = "https://github.com/LevinaLab/rnn_timescale_public"


def import_reference(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LeakyRNN:
    """Load one of the authors' published networks as a :class:`~trainers.models.LeakyRNN`.

    The model is configured as the authors' code: ``nonlinearity="outside"``,
    ``negative_slope=0.01``, ``h0_scale=0.1``, one head per readout in the file (100 in theirs;
    head ``i`` answers ``N = 2 + i`` in their multi-head networks, head 0 the current N in
    single-head ones). The file is read with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : path-like
        A checkpoint such as ``cumulative_parity_network_1/rnn_N2_N11``.
    device : str or torch.device, default="cpu"

    Returns
    -------
    LeakyRNN
        In eval mode, on ``device``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not one of the authors' ``RNN_Stack`` checkpoints (the message names
        the keys that were expected and found).

    Examples
    --------
    >>> import trainers  # doctest: +SKIP
    >>> net = trainers.import_reference("cumulative_parity_network_1/rnn_N2_N11")  # doctest: +SKIP
    >>> trainers.evaluate(net, trainers.Parity(), range(2, 12))  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no such checkpoint: {str(path)!r}. The authors' networks are in the folder trained_models/ of "
            f"{AUTHORS_REPOSITORY} (git clone it) and are named like "
            f"trained_models/cumulative_parity_network_1/rnn_N2_N11; pass the path of one of those files.")
    payload = safe_load(path)       # one-line CheckpointError (a ValueError) for unsafe or damaged files
    sd = payload.get("state_dict") if isinstance(payload, dict) else None
    expected = ["parameterlist.0", "modulelist.0.weight", "modulelist.0.bias",
                "modulelist.1.weight", "modulelist.1.bias", "modulelist.2.weight", "modulelist.2.bias"]
    if not isinstance(sd, dict) or any(k not in sd for k in expected):
        found = sorted(sd)[:8] if isinstance(sd, dict) else (sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__)
        raise ValueError(
            f"{path}: not one of the authors' RNN_Stack checkpoints (a dict with 'state_dict' "
            f"holding {expected[:5]} and readout heads modulelist.2...); found {found}. For "
            f"checkpoints written by trainers use trainers.load_model().")
    tau, w_in, w_rec = sd["parameterlist.0"], sd["modulelist.0.weight"], sd["modulelist.1.weight"]
    n = tau.shape[0]
    head_ids = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"modulelist\.(\d+)\.weight", k)) and int(m.group(1)) >= 2)
    if (tau.ndim != 1 or w_rec.shape != (n, n) or w_in.shape[0] != n or head_ids != list(range(2, 2 + len(head_ids)))
            or any(sd[f"modulelist.{i}.weight"].shape[1] != n for i in head_ids)):
        raise ValueError(f"{path}: shapes do not match one layer of {n} units with readout heads "
                         f"(tau {tuple(tau.shape)}, W_in {tuple(w_in.shape)}, W_rec {tuple(w_rec.shape)}); "
                         f"multi-layer or other architectures are not supported.")
    n_classes = sd["modulelist.2.weight"].shape[0]
    model = LeakyRNN(n, input_dim=w_in.shape[1], n_heads=len(head_ids), n_classes=n_classes, tau=1.0,
                     nonlinearity="outside", activation="leaky_relu", negative_slope=0.01,
                     h0_scale=0.1)
    with torch.no_grad():
        model.tau.copy_(tau.float())
        model.W_in.copy_(w_in.float())
        model.b_in.copy_(sd["modulelist.0.bias"].float())
        model.W_rec.copy_(w_rec.float())
        model.W_rec.fill_diagonal_(0.0)
        model.b_rec.copy_(sd["modulelist.1.bias"].float())
        model.heads.weight.copy_(torch.stack([sd[f"modulelist.{i}.weight"] for i in head_ids]).float())
        model.heads.bias.copy_(torch.stack([sd[f"modulelist.{i}.bias"] for i in head_ids]).float())
    return model.to(device).eval()
