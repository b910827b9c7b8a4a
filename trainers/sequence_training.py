"""Training on the sequence benchmarks of the fading-memory paper (Sec. 4, Tables 1-2).

SGD with momentum 0.9 and batch 128 (the paper's settings; its learning rate is not stated, ours
defaults to 0.01), readout on the last state, cross-entropy for classification and the RMS loss
for the adding problem. Reported as the paper does: the best test accuracy (or RMS) and the
number of training iterations to minimal performance (50% accuracy; RMS 0.05), the maximum
number of iterations when it is never reached.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools._validation import check_positive_int

#: Minimal performance thresholds (Sec. 4): accuracy for classification, RMS for regression.
MINIMAL_PERFORMANCE = {"classification": 50.0, "regression": 0.05}


def _loss(model, batch, kind):
    out = model.readout(model(batch.inputs)[:, -1])[:, 0]          # (batch, n_outputs)
    if kind == "classification":
        return torch.nn.functional.cross_entropy(out, batch.targets), out
    return torch.sqrt(torch.mean((out[:, 0] - batch.targets) ** 2)), out


def _evaluate(model, task, test, kind, batch, device) -> float:
    model.eval()
    with torch.no_grad():
        if kind == "regression":
            _, out = _loss(model, test, kind)
            return float(torch.sqrt(torch.mean((out[:, 0] - test.targets) ** 2)))
        correct = n = 0
        for b in task.batches("test", 1024, device=device, shuffle=False):
            _, out = _loss(model, b, kind)
            correct += int((out.argmax(-1) == b.targets).sum())
            n += b.targets.numel()
        return 100.0 * correct / n


def train_sequence(model: torch.nn.Module, task: Any, *, epochs: int = 10, batch: int = 128,
                   lr: float = 0.01, momentum: float = 0.9, clip: float | None = None,
                   steps_per_epoch: int = 100, test_size: int = 1000, seed: int = 0,
                   device: str | torch.device | None = None, progress: bool = True) -> xr.Dataset:
    """Train ``model`` (e.g. a :class:`~trainers.models.WCRNN`) on a sequence task.

    Parameters
    ----------
    model : torch.nn.Module
        With ``forward(u) -> (batch, time, state)`` and ``readout(h) -> (batch, 1, n_outputs)``.
    task : AddingProblem or ImageSequences
    epochs : int, default=10
        Passes over the training set (images) or blocks of ``steps_per_epoch`` iterations (adding).
    batch, lr, momentum : default 128, 0.01, 0.9
    clip : float, optional
        Gradient-norm clipping (the Elman baseline of Table 2 uses it).
    steps_per_epoch : int, default=100
        Adding problem only.
    test_size : int, default=1000
        Adding problem only: a fixed test set drawn once.
    seed : int, default=0
    device : optional
        Default: the model's device.

    Returns
    -------
    xarray.Dataset
        ``test_metric`` and ``train_loss`` over ``epoch`` (and the ``iteration`` at each epoch's
        end); attrs ``best`` (best test accuracy in %, or lowest RMS), ``iterations_to_mp``
        (training iterations until minimal performance was first reached), ``metric``.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import WCRNN, critical
    >>> from trainers.tasks import AddingProblem
    >>> net = WCRNN(8, critical(8, 1.0), gamma=0.01, input_dim=2, n_outputs=1)
    >>> from trainers.sequence_training import train_sequence
    >>> res = train_sequence(net, AddingProblem(10), epochs=1, steps_per_epoch=2, progress=False)
    >>> res.attrs["metric"]
    'rms'
    """
    from tqdm.auto import tqdm

    epochs = check_positive_int("epochs", epochs)
    batch = check_positive_int("batch", batch)
    kind = task.kind
    dev = next(model.parameters()).device if device is None else torch.device(device)
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    test = task.sample(test_size, generator=torch.Generator().manual_seed(seed + 1)) if kind == "regression" else None
    if test is not None:
        test = type(test)(test.inputs.to(dev), test.targets.to(dev))
    threshold = MINIMAL_PERFORMANCE[kind]
    reached = lambda m: m >= threshold if kind == "classification" else m <= threshold  # noqa: E731
    metrics, losses, iters = [], [], []
    iteration, first_mp = 0, None
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=f"train {task.name}", disable=not progress)
    for epoch in bar:
        model.train()
        if kind == "regression":
            source = (task.sample(batch, generator=gen, device=dev) for _ in range(steps_per_epoch))
        else:
            source = task.batches("train", batch, generator=gen, device=dev)
        total, count = 0.0, 0
        for b in source:
            loss, _ = _loss(model, b, kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            iteration += 1
            total += float(loss.detach())
            count += 1
        if not math.isfinite(total):
            raise FloatingPointError(f"the loss became non-finite in epoch {epoch + 1}; lower lr "
                                     f"(now {lr}) or set clip.")
        m = _evaluate(model, task, test, kind, batch, dev)
        metrics.append(m)
        losses.append(total / max(count, 1))
        iters.append(iteration)
        if first_mp is None and reached(m):
            first_mp = iteration
        bar.set_postfix_str(f"{'acc' if kind == 'classification' else 'rms'}={m:.4g}")
    best = max(metrics) if kind == "classification" else min(metrics)
    return xr.Dataset(
        {"test_metric": ("epoch", metrics), "train_loss": ("epoch", losses)},
        coords={"epoch": np.arange(1, epochs + 1), "iteration": ("epoch", iters)},
        attrs={"task": task.name, "metric": "accuracy %" if kind == "classification" else "rms",
               "best": best, "iterations_to_mp": first_mp if first_mp is not None else iteration,
               "reached_mp": first_mp is not None, "minimal_performance": threshold,
               "lr": lr, "momentum": momentum, "batch": batch, "seed": seed,
               "wall_seconds": time.perf_counter() - t0},
    )
