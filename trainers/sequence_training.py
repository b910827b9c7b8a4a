"""Training on the sequence benchmarks of the fading-memory paper (Sec. 4, Tables 1-2).

SGD with momentum 0.9 and batch 128 (the paper's settings; its learning rate is not stated, ours
defaults to 0.01), readout on the last state, cross-entropy for classification and the RMS loss
for the adding problem. Reported as the paper does: the best test accuracy (or RMS) and the
number of training iterations to minimal performance (50% accuracy; RMS 0.05), the maximum
number of iterations when it is never reached.
"""

from __future__ import annotations

import copy

import json
import math
import os
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools._validation import check_choice, check_positive_int
from trainers.tasks.sequence import SequenceBatch
from trainers.training import LATEST

#: Minimal performance thresholds (Sec. 4): accuracy for classification, RMS for regression.
MINIMAL_PERFORMANCE = {"classification": 50.0, "regression": 0.05}


def _loss(model, batch, kind):
    out = model.readout(model(batch.inputs)[:, -1])[:, 0]          # (batch, n_outputs)
    if kind == "classification":
        return torch.nn.functional.cross_entropy(out, batch.targets), out
    return torch.sqrt(torch.mean((out[:, 0] - batch.targets) ** 2)), out


def _evaluate(model, task, test, kind, device) -> float:
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


#: Names of the sequence tasks that :func:`make_sequence_task` builds (``--task`` of
#: ``trainers train-sequence``).
SEQUENCE_TASKS = ("adding", "digits", "pdigits", "smnist", "psmnist", "scifar10")


def make_sequence_task(name: str, *, length: int = 100, data: str | os.PathLike | None = None,
                       seed: int = 0) -> Any:
    """Build a sequence task of the fading-memory paper (Sec. 4) from its name.

    Parameters
    ----------
    name : {"adding", "digits", "pdigits", "smnist", "psmnist", "scifar10"}
        ``p`` marks the permuted variant (one fixed permutation drawn from ``seed``).
    length : int, default=100
        Adding problem: sequence length D.
    data : path, optional
        MNIST folder or npz (``smnist``, ``psmnist``), CIFAR-10 npz (``scifar10``).
    seed : int, default=0
        Seed of the pixel permutation.

    Returns
    -------
    AddingProblem or ImageSequences
        With a ``spec`` dict that rebuilds it (stored in checkpoints so runs can resume).

    Examples
    --------
    >>> from trainers.sequence_training import make_sequence_task
    >>> make_sequence_task("adding", length=200).spec
    {'name': 'adding', 'length': 200, 'data': None, 'seed': 0}
    """
    from trainers.tasks import AddingProblem, cifar10_gray, digits, mnist

    check_choice("task", name, SEQUENCE_TASKS)
    if name in ("smnist", "psmnist", "scifar10") and data is None:
        raise ValueError(f"task {name!r} reads local files: pass data= (the CLI's --data) with the "
                         f"path to the {'MNIST folder or npz' if 'mnist' in name else 'CIFAR-10 npz'}; "
                         f"nothing is downloaded.")
    if name == "adding":
        task = AddingProblem(length)
    elif name in ("digits", "pdigits"):
        task = digits(permute=name == "pdigits", seed=seed)
    elif name in ("smnist", "psmnist"):
        task = mnist(data, permute=name == "psmnist", seed=seed)
    else:
        task = cifar10_gray(data)
    task.spec = {"name": name, "length": int(length), "data": None if data is None else str(data),
                 "seed": int(seed)}
    return task


def _make_optimizer(name: str, params, lr: float, momentum: float) -> torch.optim.Optimizer:
    check_choice("optimizer", name, ("sgd", "adam"))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


def _to_dataset(history: list[dict[str, float]], info: dict[str, Any]) -> xr.Dataset:
    return xr.Dataset(
        {"test_metric": ("epoch", [h["test_metric"] for h in history]),
         "train_loss": ("epoch", [h["train_loss"] for h in history])},
        coords={"epoch": np.arange(1, len(history) + 1),
                "iteration": ("epoch", [int(h["iteration"]) for h in history])},
        attrs=info,
    )


def train_sequence(model: torch.nn.Module, task: Any, *, epochs: int = 10, batch: int = 128,
                   lr: float = 0.01, momentum: float = 0.9, optimizer: str = "sgd",
                   clip: float | None = None, lr_milestones: Sequence[int] = (), lr_factor: float = 0.3,
                   steps_per_epoch: int = 100, test_size: int = 1000,
                   seed: int = 0, device: str | torch.device | None = None,
                   out: str | os.PathLike | None = None, progress: bool = True) -> xr.Dataset:
    """Train ``model`` (e.g. a :class:`~trainers.models.WCRNN`) on a sequence task.

    Fading-memory paper (Dubinin & Effenberger 2024), Sec. 4: SGD with momentum 0.9, batch 128,
    readout on the last state, cross-entropy (classification) or RMS loss (adding problem);
    reported as in Tables 1-2.

    Parameters
    ----------
    model : torch.nn.Module
        With ``forward(u) -> (batch, time, state)`` and ``readout(h) -> (batch, 1, n_outputs)``.
    task : AddingProblem or ImageSequences
        E.g. from :func:`make_sequence_task`.
    epochs : int, default=10
        Passes over the training set (images) or blocks of ``steps_per_epoch`` iterations (adding).
    batch, lr, momentum : default 128, 0.01, 0.9
    optimizer : {"sgd", "adam"}, default="sgd"
        SGD with momentum is the paper's; Adam (``momentum`` unused) is offered because it
        reaches the adding problem's minimal performance in far fewer iterations.
    clip : float, optional
        Gradient-norm clipping (the Elman baseline of Table 2 uses it).
    lr_milestones : sequence of int, default=()
        Training iterations after which the learning rate is multiplied by ``lr_factor`` (a step
        schedule; the paper states none). Computed from the iteration count, so it resumes exactly.
    lr_factor : float, default=0.3
    steps_per_epoch : int, default=100
        Adding problem only.
    test_size : int, default=1000
        Adding problem only: a fixed test set drawn once.
    seed : int, default=0
        Seeds the batches (and the adding problem's test set).
    device : optional
        Default: the model's device.
    out : path, optional
        A run directory: the model, optimizer and random state are checkpointed atomically
        after every epoch (``checkpoints/latest.pt``) and the result is written to
        ``result.nc``; :func:`resume_sequence` continues an interrupted run exactly.
    progress : bool, default=True

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
    settings = {"epochs": check_positive_int("epochs", epochs), "batch": check_positive_int("batch", batch),
                "lr": float(lr), "momentum": float(momentum), "optimizer": optimizer,
                "clip": None if clip is None else float(clip),
                "lr_milestones": sorted(check_positive_int("lr_milestones", m) for m in lr_milestones),
                "lr_factor": float(lr_factor),
                "steps_per_epoch": check_positive_int("steps_per_epoch", steps_per_epoch),
                "test_size": check_positive_int("test_size", test_size), "seed": int(seed)}
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    run_dir = None
    if out is not None:
        run_dir = Path(out)
        if (run_dir / "checkpoints" / LATEST).exists():
            raise FileExistsError(f"{run_dir} already holds a run; continue it with "
                                  f"resume_sequence({str(run_dir)!r}) or choose another directory.")
        if getattr(task, "spec", None) is None:
            raise ValueError("out= needs a task that can be rebuilt on resume: build it with "
                             "make_sequence_task(name, ...).")
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return _run(model, task, settings, device=device, run_dir=run_dir, state=None, progress=progress)


def resume_sequence(run_dir: str | os.PathLike, *, epochs: int | None = None,
                    device: str | torch.device | None = None, progress: bool = True) -> xr.Dataset:
    """Continue a :func:`train_sequence` run from its latest checkpoint.

    The model, optimizer, random state and history are restored, so an interrupted run ends
    exactly where an uninterrupted one would. ``epochs`` raises the total number of epochs.

    Examples
    --------
    >>> import tempfile, torch
    >>> from trainers.models import WCRNN, critical
    >>> from trainers.sequence_training import make_sequence_task, resume_sequence, train_sequence
    >>> d = tempfile.mkdtemp()
    >>> net = WCRNN(4, critical(4), input_dim=2, n_outputs=1)
    >>> _ = train_sequence(net, make_sequence_task("adding", length=8), epochs=1, steps_per_epoch=2,
    ...                    out=d, progress=False)
    >>> resume_sequence(d, epochs=2, progress=False).sizes["epoch"]
    2
    """
    from trainers.checkpoint import load_model, read_checkpoint

    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoints/{LATEST}: not a train_sequence run "
                                f"directory (start one with trainers train-sequence --out).")
    payload = read_checkpoint(path)
    meta = payload["meta"]
    if meta.get("kind") != "sequence":
        raise ValueError(f"{path} is a {meta.get('kind')!r} checkpoint; continue it with trainers resume.")
    model = load_model(path)
    task = make_sequence_task(**meta["task"])
    settings = dict(meta["settings"])
    if epochs is not None:
        settings["epochs"] = check_positive_int("epochs", epochs)
    return _run(model, task, settings, device=device, run_dir=run_dir, progress=progress,
                state={"optimizer": payload["optimizer"], "rng": payload["rng"]["batches"],
                       "history": meta["history"]})


def _run(model, task, settings, *, device, run_dir, state, progress) -> xr.Dataset:
    from tqdm.auto import tqdm

    from dynatools._atomic import write_atomic
    from trainers.checkpoint import save_checkpoint

    kind = task.kind
    dev = next(model.parameters()).device if device is None else torch.device(device)
    model.to(dev)
    seed, batch = settings["seed"], settings["batch"]
    gen = torch.Generator().manual_seed(seed)
    opt = _make_optimizer(settings["optimizer"], [p for p in model.parameters() if p.requires_grad],
                          settings["lr"], settings["momentum"])
    history: list[dict[str, float]] = []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        history = list(state["history"])
    test = None
    if kind == "regression":
        test = task.sample(settings["test_size"], generator=torch.Generator().manual_seed(seed + 1))
        test = type(test)(test.inputs.to(dev), test.targets.to(dev))
    threshold = MINIMAL_PERFORMANCE[kind]
    reached = (lambda m: m >= threshold) if kind == "classification" else (lambda m: m <= threshold)
    iteration = int(history[-1]["iteration"]) if history else 0
    t0 = time.perf_counter()

    def info() -> dict[str, Any]:
        metrics = [h["test_metric"] for h in history]
        first = next((h["iteration"] for h in history if reached(h["test_metric"])), None)
        best = (max(metrics) if kind == "classification" else min(metrics)) if metrics else math.nan
        return {"task": task.name, "metric": "accuracy %" if kind == "classification" else "rms",
                "best": best, "iterations_to_mp": int(first if first is not None else iteration),
                "reached_mp": int(first is not None), "minimal_performance": threshold,
                **{k: ("none" if v is None else json.dumps(v) if isinstance(v, list) else v)
                   for k, v in settings.items()},
                "wall_seconds": time.perf_counter() - t0}

    bar = tqdm(range(len(history), settings["epochs"]), desc=f"train {task.name}", disable=not progress,
               initial=len(history), total=settings["epochs"])
    for epoch in bar:
        model.train()
        if kind == "regression":
            source = (task.sample(batch, generator=gen).to(dev)
                      for _ in range(settings["steps_per_epoch"]))
        else:
            source = task.batches("train", batch, generator=gen, device=dev)
        total, count = 0.0, 0
        for b in source:
            loss, _ = _loss(model, b, kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings["clip"] is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip"])
            decays = sum(iteration >= m for m in settings.get("lr_milestones", ()))
            for group in opt.param_groups:
                group["lr"] = settings["lr"] * settings.get("lr_factor", 1.0) ** decays
            opt.step()
            iteration += 1
            total += float(loss.detach())
            count += 1
        if not math.isfinite(total):
            raise FloatingPointError(f"the loss became non-finite in epoch {epoch + 1}; lower lr "
                                     f"(now {settings['lr']}) or set clip.")
        m = _evaluate(model, task, test, kind, dev)
        history.append({"test_metric": m, "train_loss": total / max(count, 1), "iteration": iteration})
        if run_dir is not None:
            meta = {"kind": "sequence", "task": task.spec, "settings": settings, "history": history,
                    "epoch": epoch + 1}
            save_checkpoint(run_dir / "checkpoints" / LATEST, model, meta, optimizer=opt,
                            rng={"batches": gen.get_state()})
        bar.set_postfix_str(f"{'acc' if kind == 'classification' else 'rms'}={m:.4g}")
    result = _to_dataset(history, info())
    if run_dir is not None:
        write_atomic(run_dir / "result.nc", lambda tmp: result.to_netcdf(tmp, engine="netcdf4"))
    return result


def held_out_batch(task: Any, size: int, *, seed: int = 0) -> Any:
    """A fixed batch of ``size`` test sequences (the adding problem: fresh ones drawn from ``seed``;
    images: a seeded random subset of the test split). The fading-memory paper computes Hessians
    on a fixed set of 1000 test samples (Sec. 4.1)."""
    size = check_positive_int("size", size)
    gen = torch.Generator().manual_seed(seed)
    if task.kind == "regression":
        return task.sample(size, generator=gen)
    n = task.size("test")
    idx = torch.randperm(n, generator=gen)[: min(size, n)]
    x = task.x["test"][idx]
    if task.permutation is not None:
        x = x[:, torch.as_tensor(task.permutation)]
    return SequenceBatch(x.unsqueeze(-1), task.y["test"][idx])


def sequence_loss_closure(model: torch.nn.Module, task: Any, *, batch: int = 1000,
                          seed: int = 0) -> tuple[Any, dict[str, torch.Tensor]]:
    """The training loss (cross-entropy or RMS, last state) on one fixed test batch as a function
    of the parameters, for :func:`dynatools.hessian_eigenvalues`: returns ``(loss_fn, params)``.

    Twice differentiable: a copy of the model runs with ``fused = False`` (``model`` is not
    changed); ``params`` holds the trainable parameters only. Fading-memory paper Sec. 4.1
    (Fig. 2C): Hessians on a fixed set of 1000 test samples.
    """
    from torch.func import functional_call

    model = copy.deepcopy(model)                 # the caller's model keeps its fast fused path
    if hasattr(model, "fused"):
        model.fused = False
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    b = held_out_batch(task, batch, seed=seed).to(dev)
    u = b.inputs.to(dtype)
    targets = b.targets.to(dtype) if task.kind == "regression" else b.targets
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def loss_fn(p: dict[str, torch.Tensor]) -> torch.Tensor:
        H = functional_call(model, p, (u,))[:, -1]
        out = torch.nn.functional.linear(H, p["W_out"], p["b_out"])
        if task.kind == "classification":
            return torch.nn.functional.cross_entropy(out, targets)
        return torch.sqrt(torch.mean((out[:, 0] - targets) ** 2))

    return loss_fn, params
