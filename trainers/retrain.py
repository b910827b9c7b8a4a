"""Re-training experiments of the timescale paper.

* :func:`retrain`: train a network that solves some N on a larger N directly, without the
  intermediate Ns, for a fixed number of epochs (Sec. 4.3 and Fig. 8c: networks solving N = 16,
  20 epochs, relative accuracy on the new N).
* :func:`refit_readout`: freeze the recurrent network and fit fresh readouts for other Ns (Sec. 4.1:
  single-head networks "cannot perform the task for lower Ns it was trained for during the
  curriculum, even after retraining the readout weights", i.e. catastrophic forgetting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools.utils import check_positive_int
from trainers.config import TrainConfig
from trainers.evaluation import continuous_accuracy


def _task_fields(task: Any) -> dict[str, Any]:
    """Configuration of a task given by name or as a task object (its options kept)."""
    from trainers.tasks import TASKS

    if isinstance(task, str):
        return {"task": TASKS[task].name}
    if not hasattr(task, "config") or task.config().get("task") not in TASKS:
        raise TypeError(f"task must be one of {sorted(TASKS)} or a task built from them; found {task!r}.")
    options = task.config()
    return {"task": options.pop("task"), "task_options": options}


def _base_config(model: torch.nn.Module, task: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The model's architecture options (those its class declares) and the task's, plus ``overrides``."""
    from trainers.models import MODELS

    cfg = model.config()
    declared = MODELS.options(cfg["model"])
    options = {k: v for k, v in cfg.items() if k in declared}
    base: dict[str, Any] = {"model": cfg["model"], "units": cfg["n_units"], "model_options": options,
                            **_task_fields(task)}
    base.update(overrides)
    return base


def retrain(model: torch.nn.Module, new_N: int, *, epochs: int = 20, task: Any = "parity",
            seed: int = 0, run_dir: Any = None, progress: bool = True, **config: Any):
    """Train ``model`` on ``new_N`` directly (no curriculum) for ``epochs`` epochs (Fig. 8c).

    The recurrent weights, input weights, biases and timescales start from ``model``; the network
    gets one fresh readout head for ``new_N`` (the paper re-trains "as a single-head network"),
    whatever the number of heads ``model`` had, so single- and multi-head networks start alike.
    Training stops early if ``new_N`` is solved (98%).

    Parameters
    ----------
    model : trainers.LeakyRNN, GRU or LSTM
    new_N : int
    epochs : int, default=20
    task : {"parity", "dms"} or BinaryTask, default="parity"
        A task object keeps its input rescaling k and encoding (use the one the network was trained
        with, e.g. ``TrainConfig.make_task()``).
    seed : int, default=0
    run_dir : path, optional
        Checkpoint the re-training there (resumable with :func:`trainers.resume`).
    progress : bool, default=True
    **config
        Other :class:`~trainers.TrainConfig` fields (e.g. ``batch``, ``steps_per_epoch``, ``lr``).

    Returns
    -------
    trainers.Run
        The re-trained network is ``run.model`` (head 0 answers ``new_N``).

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.retrain import retrain
    >>> net = trainers.LeakyRNN(8, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> run = retrain(net, 5, epochs=1, batch=4, steps_per_epoch=1, eval_batches=1, device="cpu",
    ...               progress=False)
    >>> run.model.heads.n_heads
    1
    """
    from trainers.engine import train

    epochs = check_positive_int("epochs", epochs)
    cfg = TrainConfig.from_dict(_base_config(model, task, {
        "curriculum": "none", "curriculum_options": {"n_start": new_N, "n_max": new_N}, "n_heads": 1,
        "max_epochs": epochs, "seed": seed, **config}))
    return train(cfg, run_dir, init=model, init_readout=False, progress=progress)


def retrain_sweep(model: torch.nn.Module, new_Ns: Sequence[int], *, base_N: int, base_head: int,
                  epochs: int = 20, task: Any = "parity", seed: int = 0,
                  accuracy: dict[str, Any] | None = None, progress: bool = True,
                  **config: Any) -> xr.Dataset:
    """Relative accuracy after re-training on each of ``new_Ns`` (Fig. 8c).

    The accuracy (App. F: one long sequence per trial, read out at every step) of each re-trained
    network on its new N, relative to the original network's accuracy on ``base_N``:
    ``(acc - 0.5) / (acc_base - 0.5)``.

    Parameters
    ----------
    model : trainers model
    new_Ns : sequence of int
    base_N, base_head : int
        The N the original network solves and the head that answers it.
    epochs, task, seed, progress, **config
        As in :func:`retrain`.
    accuracy : dict, optional
        Keyword arguments of :func:`~trainers.evaluation.continuous_accuracy` (``burn_in``,
        ``steps``, ``trials``, ``seed``).

    Returns
    -------
    xarray.Dataset
        ``accuracy`` and ``relative_accuracy`` over ``(N, trial)``, ``epochs_trained`` over ``N``;
        attrs ``base_accuracy``, ``base_N``, ``epochs``.
    """
    from dynatools.robustness import relative_accuracy

    from trainers.tasks import TASKS

    acc_kw = dict(accuracy or {})
    task_obj = TASKS[task]() if isinstance(task, str) else task
    base = continuous_accuracy(model, task_obj, base_N, head=base_head, **acc_kw)
    base_mean = float(base.mean())
    relative_accuracy(base_mean, base_mean)          # a network at chance: refuse before training
    accs, trained = [], []
    for N in new_Ns:
        run = retrain(model, int(N), epochs=epochs, task=task, seed=seed, progress=progress, **config)
        accs.append(continuous_accuracy(run.model, task_obj, int(N), head=0,
                                        **{**acc_kw, "burn_in": max(acc_kw.get("burn_in", 100), int(N))}))
        trained.append(len(run.history))
    acc = np.stack(accs)
    return xr.Dataset(
        {"accuracy": (("N", "trial"), acc),
         "relative_accuracy": (("N", "trial"), relative_accuracy(acc, base_mean)),
         "epochs_trained": ("N", np.asarray(trained))},
        coords={"N": np.asarray(new_Ns, dtype=int), "trial": np.arange(acc.shape[1])},
        attrs={"base_accuracy": base_mean, "base_N": int(base_N), "epochs": epochs,
               "task": _task_fields(task)["task"]},
    )


def refit_readout(model: torch.nn.Module, Ns: Sequence[int], *, task: Any = None, batch: int = 2048,
                  seed: int = 0, max_iter: int = 200) -> xr.Dataset:
    """Fit fresh logistic-regression readouts for ``Ns`` on the frozen network; test accuracy.

    Tests catastrophic forgetting (timescale paper, Sec. 4.1): whether the final states of
    a network trained up to some N still hold the information for smaller Ns. For each N, a
    linear readout of the last state is fitted by L-BFGS on the cross-entropy (a convex problem)
    on ``batch`` training sequences and scored on ``batch`` fresh ones; the network is unchanged.

    Parameters
    ----------
    model : trainers model
    Ns : sequence of int
    task : BinaryTask, optional
        Default ``trainers.Parity()``.
    batch : int, default=2048
    seed : int, default=0
    max_iter : int, default=200
        L-BFGS iterations.

    Returns
    -------
    xarray.Dataset
        ``train_accuracy`` and ``test_accuracy`` (fractions) over ``N``.

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.retrain import refit_readout
    >>> net = trainers.LeakyRNN(8, generator=torch.Generator().manual_seed(0))
    >>> refit_readout(net, [2, 3], batch=64).test_accuracy.sizes["N"]
    2
    """
    from trainers.tasks import Parity

    task = Parity() if task is None else task
    batch = check_positive_int("batch", batch)
    Ns = [int(n) for n in Ns]
    p = next(model.parameters())
    gen = torch.Generator(device=p.device).manual_seed(seed)
    lengths = torch.Generator().manual_seed(seed + 1)

    def features(b):
        with torch.no_grad():
            H = model(b.inputs.to(p.dtype), model.initial_state(b.inputs.shape[0], generator=gen))[:, -1]
            return (model.hidden(H) if hasattr(model, "hidden") else H).double()

    train_b = task.sample(Ns, batch, generator=gen, device=p.device, length_generator=lengths)
    test_b = task.sample(Ns, batch, generator=gen, device=p.device, length_generator=lengths)
    X, Xt = features(train_b), features(test_b)
    mu, sd = X.mean(0), X.std(0).clamp(min=1e-12)
    X, Xt = (X - mu) / sd, (Xt - mu) / sd
    train_acc, test_acc = [], []
    for j, _ in enumerate(Ns):
        y, yt = train_b.labels[:, j], test_b.labels[:, j]
        n_classes = int(max(y.max(), yt.max())) + 1
        w = torch.zeros(X.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(X @ w + b, y) + 1e-4 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            train_acc.append(float(((X @ w + b).argmax(-1) == y).double().mean()))
            test_acc.append(float(((Xt @ w + b).argmax(-1) == yt).double().mean()))
    return xr.Dataset({"train_accuracy": ("N", train_acc), "test_accuracy": ("N", test_acc)},
                      coords={"N": Ns}, attrs={"batch": batch, "seed": seed, "ridge": 1e-4,
                                               "method": "logistic regression on the last state (L-BFGS)"})


__all__ = ["retrain", "retrain_sweep", "refit_readout"]

