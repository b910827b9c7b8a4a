"""The one training engine: any registered model on any registered task under any curriculum.

batch -> loss -> optimizer step (clipping, learning-rate milestones) -> evaluation -> one metrics
line -> atomic checkpoint -> resume with the same random streams.

* Timescale paper (Sec. 3.2, App. C): back-propagation through time, cross-entropy on the last
  step summed over the active heads, a curriculum over N that advances when the active heads are
  solved (:mod:`trainers.curricula`); accuracy on fresh batches after every epoch.
* Fading-memory paper (Sec. 4, Tables 1-2): readout on the last state, cross-entropy or RMS loss,
  SGD with momentum 0.9; test accuracy (or RMS) after every epoch and the iterations to minimal
  performance (50% accuracy; RMS 0.05).

The run directory (:class:`trainers.rundir.RunDir`) holds ``config.json``, ``metrics.jsonl`` (one
JSON line per epoch), ``checkpoints/latest.pt`` (after every epoch: weights, optimizer, random
streams, history) and ``checkpoints/N###.pt`` (kept when the heads up to that N were solved).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dynatools.threads import step_work, torch_threads
from dynatools.utils import nonfinite_names
from trainers.config import TrainConfig
from trainers.rundir import RunDir, metrics_dataset


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but PyTorch sees no CUDA device; use "
                         "device='auto' or 'cpu'.")
    return dev


@dataclass
class Run:
    """A training run: its configuration, network, history and where it stopped.

    Attributes
    ----------
    config : TrainConfig
        The resolved configuration.
    model : torch.nn.Module
        The network as trained so far.
    history : list of dict
        One entry per epoch (the lines of ``metrics.jsonl``).
    Ns : list of int
        Active task sizes for the next epoch (empty for tasks without N).
    solved : list of list of int
        Every solved set of Ns, in order.
    stop_reason : str
        "target" (the curriculum's last N solved), "max_epochs", "time_budget" or "running".
    run_dir : pathlib.Path or None
        Where checkpoints and metrics are written (None: in memory only).
    """

    config: TrainConfig
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    Ns: list[int] = field(default_factory=list)
    solved: list[list[int]] = field(default_factory=list)
    stop_reason: str = "running"
    run_dir: Path | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_solved_N(self) -> int | None:
        """Largest N among the solved heads (None when nothing was solved)."""
        return max((max(s) for s in self.solved), default=None)

    @property
    def losses(self) -> list[float]:
        """Mean training loss of every epoch."""
        return [h["loss"] for h in self.history]

    def metrics(self):
        """The history as an :class:`xarray.Dataset` over ``epoch`` (and ``N`` for curricula);
        see :func:`trainers.rundir.metrics_dataset`."""
        return metrics_dataset(self.history, self.config, self.stop_reason, steps=self.steps or None)


def evaluate(model: torch.nn.Module, task, Ns: Sequence[int] | None = None, *, batches: int = 50,
             batch: int = 256, generator: torch.Generator | None = None,
             device: str | torch.device | None = None,
             length_generator: torch.Generator | None = None) -> np.ndarray:
    """The task's test metric of ``model``, per active head: ``task.evaluate(...)``.

    For parity/DMS: accuracy (per cent) of heads ``0..len(Ns)-1`` on ``batches`` fresh batches of
    ``batch``, head ``i`` answering ``Ns[i]``; for sequence tasks the test accuracy (or RMS) of
    the one head (``Ns``, ``batches`` and the generators are not used).

    Examples
    --------
    >>> import torch, trainers
    >>> net = trainers.LeakyRNN(8, n_heads=2, generator=torch.Generator().manual_seed(0))
    >>> trainers.evaluate(net, trainers.Parity(), [2, 3], batches=2, batch=16).shape
    (2,)
    """
    return task.evaluate(model, Ns, batches=batches, batch=batch, generator=generator,
                         length_generator=length_generator, device=device)


def _seeds(seed: int) -> tuple[int, int, int]:
    init, data, lengths = np.random.SeedSequence(seed).generate_state(3)
    return int(init), int(data), int(lengths)


@dataclass
class _Streams:
    """The run's random streams: one on the device (bits, initial states), one on the CPU
    (sequence lengths, shuffles, CPU-drawn batches), so that a CPU draw never waits for the GPU."""

    data: torch.Generator
    lengths: torch.Generator

    def state(self, device: torch.device) -> dict[str, Any]:
        return {"data": self.data.get_state(), "lengths": self.lengths.get_state(),
                "device_type": torch.tensor(list(device.type.encode()), dtype=torch.uint8)}


def _growth_generator(seed: int, N: int) -> torch.Generator:
    """The CPU generator a growth curriculum draws the weights of the module for ``N`` from:
    seeded from (seed, N), so growth is deterministic and needs no saved state."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), int(N)]).generate_state(1)[0]))


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module,
                   previous: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """The configuration's optimizer over the trainable parameters: SGD (Nesterov when
    ``nesterov`` and momentum > 0) or Adam.

    By default one parameter group at ``cfg.lr``. A curriculum with a method
    ``param_groups(model, lr)`` that returns a list of groups (dicts with ``"params"`` and ``"lr"``)
    chooses the groups and their rates instead (the growth curriculum's ``freeze="decay"``: one
    rate per module); None from it means the default. The groups must hold every trainable
    parameter exactly once and no frozen one. Each group keeps its rate as ``base_lr``, which the
    ``lr_milestones`` schedule multiplies. The rates must be a function of the model, so that a
    resumed run rebuilds the same optimizer.

    Parameters
    ----------
    cfg : TrainConfig
        A resolved configuration.
    model : torch.nn.Module
    previous : torch.optim.Optimizer, optional
        The optimizer this one replaces (after a growth): the state (momentum buffers, Adam
        moments) of every parameter it shares with the new one carries over, as if the
        parameter's optimizer had never been rebuilt.

    Returns
    -------
    torch.optim.Optimizer

    Examples
    --------
    >>> import trainers
    >>> from trainers.engine import make_optimizer
    >>> cfg = trainers.TrainConfig.from_dict({"model": "modular", "curriculum": "growth", "units": 4,
    ...                                       "module_size": 4, "freeze": "decay"}).resolved()
    >>> net = cfg.make_model(cfg.make_task())
    >>> [g["lr"] for g in make_optimizer(cfg, net).param_groups]
    [0.1]
    """
    hook = getattr(cfg.make_curriculum(), "param_groups", None)
    groups = hook(model, cfg.lr) if callable(hook) else None
    if groups is None:
        params: Any = [p for p in model.parameters() if p.requires_grad]
    else:
        params = _checked_groups(groups, model)
    if cfg.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    nesterov=bool(cfg.nesterov and cfg.momentum > 0))
    if previous is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p in previous.state:
                    optimizer.state[p] = previous.state[p]
    return optimizer


def _checked_groups(groups: Sequence[dict[str, Any]], model: torch.nn.Module) -> list[dict[str, Any]]:
    """A curriculum's parameter groups, checked against the model's trainable parameters; each
    gets ``base_lr`` (its rate before ``lr_milestones``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, str] = {}
    out = []
    for group in groups:
        if not isinstance(group, dict) or "params" not in group or "lr" not in group:
            raise ValueError(f"a curriculum's param_groups must return dicts with 'params' and 'lr'; found "
                             f"{group!r:.80}.")
        params = list(group["params"])
        for p in params:
            name = names.get(id(p))
            if name is None:
                raise ValueError("a curriculum's param_groups holds a tensor that is not a parameter of the model.")
            if not p.requires_grad:
                raise ValueError(f"a curriculum's param_groups holds the frozen parameter {name!r}; give "
                                 f"only trainable ones.")
            if id(p) in seen:
                raise ValueError(f"a curriculum's param_groups holds {name!r} twice; give every parameter once.")
            seen[id(p)] = name
        if params:
            out.append({**group, "params": params, "base_lr": float(group["lr"])})
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"a curriculum's param_groups leaves out the trainable parameters {missing[:6]}; "
                         f"every trainable parameter needs a group.")
    return out


def train(config: TrainConfig | dict[str, Any], run_dir: str | os.PathLike | None = None, *,
          init: torch.nn.Module | None = None, init_readout: bool = True, progress: bool = True) -> Run:
    """Train a network as ``config`` says; checkpoints go to ``run_dir``.

    Parameters
    ----------
    config : TrainConfig or dict
        The run's configuration (a dict goes through :meth:`TrainConfig.from_dict`); checked
        completely before any training.
    run_dir : path-like, optional
        Directory for ``config.json``, ``metrics.jsonl`` and ``checkpoints/``; created if needed,
        must not already hold a run. None trains in memory without checkpoints.
    init : torch.nn.Module, optional
        Start from this network's weights instead of a fresh initialisation (re-training, Fig. 8c
        of the timescale paper). Every weight whose name and shape match is copied; readout heads
        of another shape keep their fresh initialisation. The initial-state scale ``h0_scale`` of
        a leaky RNN is copied too.
    init_readout : bool, default=True
        Copy ``init``'s readout heads where their shape matches. False: every head starts fresh.
    progress : bool, default=True
        Show a progress bar (epoch, active N range, loss, metric).

    Returns
    -------
    Run

    Examples
    --------
    >>> import trainers
    >>> cfg = {"units": 16, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 1,
    ...        "n_max": 3, "device": "cpu", "seed": 0}
    >>> run = trainers.train(cfg, progress=False)
    >>> run.stop_reason, len(run.history)
    ('max_epochs', 1)
    >>> run = trainers.train({"task": "adding", "length": 10, "units": 8, "steps_per_epoch": 2,
    ...                       "max_epochs": 1, "device": "cpu", "seed": 0}, progress=False)
    >>> sorted(run.history[0]["rms"])
    ['test']
    """
    cfg = (TrainConfig.from_dict(config) if isinstance(config, dict) else config).resolved()
    device = resolve_device(cfg.device)
    task = cfg.make_task()
    if getattr(task, "time_resolved", False):
        return _train_trials(cfg, task, device, run_dir, init=init, init_readout=init_readout, progress=progress)
    init_seed, data_seed, length_seed = _seeds(cfg.seed)
    model = cfg.make_model(task, generator=torch.Generator().manual_seed(init_seed))
    if init is not None:
        _copy_matching(init, model, heads=init_readout)
        if hasattr(init, "h0_scale") and hasattr(model, "h0_scale"):
            model.h0_scale = float(init.h0_scale)
    rd = None
    if run_dir is not None:  # only once the model is built: a rejected configuration writes nothing
        rd = RunDir(run_dir)
        rd.prepare()
        rd.write_config(cfg)
    model = model.to(device)
    optimizer = make_optimizer(cfg, model)
    streams = _Streams(torch.Generator(device=device).manual_seed(data_seed),
                       torch.Generator().manual_seed(length_seed))
    run = Run(cfg, model, Ns=cfg.make_curriculum().initial(), run_dir=None if rd is None else rd.path)
    with _threads(model, cfg):
        return _loop(run, task, optimizer, streams, device, start_epoch=0, wall0=0.0, progress=progress)


def _threads(model: torch.nn.Module, cfg: TrainConfig):
    """Torch threads for training (dynatools.threads): one for a small network, else every core
    (``DYNATOOLS_THREADS`` / ``--threads`` decide if set); the forward and backward pass of a
    step cost about three forward passes."""
    return torch_threads(work=3 * step_work(model, cfg.batch))


def _copy_matching(source: torch.nn.Module, target: torch.nn.Module, *, heads: bool = True) -> None:
    """Copy every state entry whose name and shape match (the readout ``heads.*`` only if
    ``heads``); refuse models whose recurrent part differs."""
    src = source.state_dict()
    dst = target.state_dict()
    shared = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape
              and (heads or not k.startswith("heads."))}
    recurrent = [k for k in dst if not k.startswith("heads.")]
    missing = [k for k in recurrent if k not in shared]
    if missing:
        details = ", ".join(f"{k}: {tuple(src[k].shape) if k in src else 'absent'} vs {tuple(dst[k].shape)}"
                            for k in missing[:4])
        raise ValueError(f"init does not match the configured model ({details}); set units, model "
                         f"and its options as in the initial network.")
    with torch.no_grad():
        for k, v in shared.items():
            dst[k].copy_(v.to(dst[k].dtype))


def resume(run_dir: str | os.PathLike, *, max_epochs: int | None = None,
           time_budget: float | None = None, device: str | None = None,
           progress: bool = True) -> Run:
    """Continue a run from ``RUN_DIR/checkpoints/latest.pt`` with the same random streams.

    A run killed at any point continues from the end of its last completed epoch and produces
    the same losses and weights as an uninterrupted run (on the same device). ``max_epochs``
    and ``time_budget`` (seconds of training in total) may be raised to extend a run.
    """
    rd = RunDir(run_dir)
    if not rd.latest_path.is_file():
        raise FileNotFoundError(f"no run to resume in {str(rd.path)!r}: {rd.latest_path} is missing. Start "
                                f"one with `trainers train --out {rd.path}`.")
    rd.remove_stale()
    latest = rd.checkpoint()
    payload, meta = latest.payload, latest.meta
    if meta.get("kind") == "sequence":
        raise ValueError(f"{rd.path} was written by 'trainers train-sequence' of trainers 0.1, which the "
                         f"engine cannot continue; its network loads with trainers.RunDir({str(rd.path)!r})"
                         f".load(). Start a new run with 'trainers train --task {meta['task']['name']} ...'.")
    if "config" not in meta or "rng" not in payload:
        raise ValueError(f"{latest.path} is not the latest checkpoint of a `trainers train` run (it has no "
                         f"{'config' if 'config' not in meta else 'random-stream state'}); it cannot be "
                         f"resumed.")
    cfg = latest.config
    rd.check_config(cfg)
    updates: dict[str, Any] = {}
    if max_epochs is not None:
        updates["max_epochs"] = max_epochs
    if time_budget is not None:
        updates["time_budget"] = time_budget
    if device is not None:
        updates["device"] = device
    cfg = dataclasses.replace(cfg, **updates).resolved()
    dev = resolve_device(cfg.device)
    rng = payload["rng"]
    trained_on = bytes(rng["device_type"].tolist()).decode()
    if trained_on != dev.type:
        raise ValueError(
            f"this run was trained on {trained_on} and would resume on {dev.type}; its random "
            f"stream lives on {trained_on}, so exact continuation needs the same device: resume "
            f"with --device {trained_on} (device={trained_on!r}).")
    if updates:  # every check passed: record the new limits
        rd.write_config(cfg)
    model = latest.model(dev)
    model.train()
    optimizer = make_optimizer(cfg, model)
    optimizer.load_state_dict(payload["optimizer"])
    streams = _Streams(torch.Generator(device=dev), torch.Generator())
    if "data" in rng:
        streams.data.set_state(rng["data"])
        streams.lengths.set_state(rng["lengths"])
    run = Run(cfg, model, history=meta["history"], Ns=meta["Ns"], solved=meta["solved"],
              stop_reason=meta["stop_reason"], run_dir=rd.path)
    if run.stop_reason == "target":
        return run
    task = cfg.make_task()
    if getattr(task, "time_resolved", False):
        return _resume_trials(run, task, payload, dev, meta, progress=progress)
    with _threads(model, cfg):
        return _loop(run, task, optimizer, streams, dev, start_epoch=meta["epoch"],
                     wall0=meta["wall_seconds"], progress=progress)


def epoch_steps(cfg: TrainConfig, task) -> int:
    """Optimizer steps in one epoch of a (resolved) configuration: ``cfg.steps_per_epoch``, or,
    for a task that trains on a fixed set (``task.size("train")``: the image tasks), one pass
    over it in batches of ``cfg.batch``.

    Examples
    --------
    >>> import trainers
    >>> from trainers.engine import epoch_steps
    >>> cfg = trainers.TrainConfig(seed=0).resolved()          # the paper's parity defaults
    >>> epoch_steps(cfg, cfg.make_task()), cfg.batch
    (600, 256)
    """
    size = getattr(task, "size", None)
    return math.ceil(size("train") / cfg.batch) if callable(size) else int(cfg.steps_per_epoch)


def _tau_stats(model: torch.nn.Module) -> dict[str, float]:
    if not hasattr(model, "effective_tau"):
        return {}
    with torch.no_grad():
        tau = model.effective_tau()
        return {"tau_mean": float(tau.mean()), "tau_std": float(tau.std())}


def _loop(run: Run, task, optimizer, streams: _Streams, device, *, start_epoch: int, wall0: float,
          progress: bool) -> Run:
    from tqdm.auto import tqdm

    cfg, model = run.config, run.model
    curriculum = cfg.make_curriculum()
    rd = None if run.run_dir is None else RunDir(run.run_dir)
    wall = wall0
    iteration = int(run.history[-1].get("iteration", 0)) if run.history else 0
    if cfg.time_budget is not None and wall >= cfg.time_budget:
        run.stop_reason = "time_budget"  # already spent (raise it to continue)
        return run
    run.stop_reason = "running"
    metric = task.metric
    steps = epoch_steps(cfg, task)
    bar = tqdm(total=cfg.max_epochs, initial=start_epoch, desc=f"train {task.name}", unit="epoch",
               disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            t0 = time.perf_counter()
            Ns = list(run.Ns)
            heads = len(Ns) if Ns else 1
            span = f" N={Ns[0]}..{Ns[-1]}" if Ns else ""
            model.train()
            losses, sequences = [], 0
            batches = task.train_batches(Ns, batch=cfg.batch, steps=cfg.steps_per_epoch, generator=streams.data,
                                         length_generator=streams.lengths, device=device)
            with tqdm(batches, desc=f"epoch {epoch + 1}{span}", leave=False, disable=not progress,
                      dynamic_ncols=True, total=steps) as inner:     # closed at once on Ctrl-C as well
                for b in inner:
                    n = b.inputs.shape[0]
                    H = model(b.inputs, model.initial_state(n, generator=streams.data))
                    loss = task.loss(model.readout(H[:, -1], heads=heads), b)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=cfg.clip)
                    if cfg.lr_milestones:           # a step schedule computed from the iteration count
                        decays = sum(iteration >= m for m in cfg.lr_milestones)
                        for group in optimizer.param_groups:
                            group["lr"] = group.get("base_lr", cfg.lr) * cfg.lr_factor ** decays
                    optimizer.step()
                    iteration += 1
                    sequences += n
                    losses.append(loss.detach())
            train_seconds = time.perf_counter() - t0
            loss_mean = float(torch.stack(losses).mean())
            broken = nonfinite_names(model.named_parameters())
            if not math.isfinite(loss_mean) or broken:   # the last update can break the weights alone
                what = f"the loss became {loss_mean}" if not math.isfinite(loss_mean) else \
                    f"the parameters {broken} became NaN or inf"
                raise FloatingPointError(
                    f"{what} in epoch {epoch + 1}; lower lr (now {cfg.lr}) or set clip (now {cfg.clip}). "
                    f"The last good state is in the latest checkpoint (not overwritten).")
            values = task.evaluate(model, Ns, batches=cfg.eval_batches, batch=cfg.batch,
                                   generator=streams.data, length_generator=streams.lengths, device=device)
            wall += time.perf_counter() - t0
            solved = curriculum.solved(values)
            labels = [str(n) for n in Ns] if Ns else ["test"]
            entry = {
                "epoch": epoch + 1, "loss": loss_mean, "metric": metric,
                metric: {lb: float(v) for lb, v in zip(labels, values)},
                f"mean_{metric}": float(np.mean(values)), "Ns": Ns, "solved": solved,
                **_tau_stats(model),
                "iteration": iteration, "wall_seconds": wall, "epoch_seconds": time.perf_counter() - t0,
                "sequences_per_s": sequences / train_seconds,
            }
            if task.minimal_performance is not None:
                entry["minimal_performance"] = task.minimal_performance
            run.history.append(entry)
            if solved:
                run.solved.append(Ns)
                if rd is not None:
                    rd.save_solved(model, cfg, epoch=epoch + 1, Ns=Ns, accuracy=entry[metric])
                if curriculum.finished(Ns):
                    run.stop_reason = "target"
                else:
                    run.Ns = curriculum.next(Ns)
                    if hasattr(curriculum, "grow"):     # growth curriculum: add a module for the new N
                        curriculum.grow(model, _growth_generator(cfg.seed, run.Ns[-1]))
                        # parameters were added (and frozen): a new optimizer; shared ones keep their state
                        optimizer = make_optimizer(cfg, model, previous=optimizer)
            if run.stop_reason == "running":
                if epoch + 1 >= cfg.max_epochs:
                    run.stop_reason = "max_epochs"
                elif cfg.time_budget is not None and wall >= cfg.time_budget:
                    run.stop_reason = "time_budget"
            if rd is not None:
                rd.save_latest(run, optimizer, streams.state(device), epoch=epoch + 1, wall=wall)
            bar.update(1)
            bar.set_postfix_str(f"{span.strip()} loss={loss_mean:.3f} {metric}={np.mean(values):.4g}")
            if run.stop_reason != "running":
                break
    finally:
        bar.close()
    if run.stop_reason == "running":  # max_epochs already reached before this call
        run.stop_reason = "max_epochs"
    return run


# ---------------------------------------------------------------------- trial tasks (ensembles)
def _member_streams(seed: int, members: int, device: torch.device) -> list[_Streams]:
    """Member k's streams: those of a single run with seed ``seed + k``."""
    out = []
    for k in range(members):
        _, data_seed, length_seed = _seeds(seed + k)
        out.append(_Streams(torch.Generator(device=device).manual_seed(data_seed),
                            torch.Generator().manual_seed(length_seed)))
    return out


def _streams_state(streams: list[_Streams], device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"device_type": torch.tensor(list(device.type.encode()), dtype=torch.uint8)}
    for k, st in enumerate(streams):
        state[f"data{k}"] = st.data.get_state()
        state[f"lengths{k}"] = st.lengths.get_state()
    return state


def _train_trials(cfg: TrainConfig, task, device: torch.device, run_dir, *, init, init_readout: bool = True,
                  progress: bool) -> Run:
    """Train ``cfg.members`` networks on a trial task as one ensemble (:mod:`trainers.ensemble`);
    member k is initialised as a single run with seed ``cfg.seed + k`` (or from ``init``: one
    network for every member, or an ensemble of as many members)."""
    from trainers.ensemble import Ensemble

    if isinstance(init, Ensemble) and init.size != cfg.members:
        raise ValueError(f"init is an ensemble of {init.size} networks but members={cfg.members}; give as "
                         f"many members, or one network to start every member from.")
    members = []
    for k in range(cfg.members):
        init_seed, _, _ = _seeds(cfg.seed + k)
        member = cfg.make_model(task, generator=torch.Generator().manual_seed(init_seed))
        if init is not None:
            source = init.members[k] if isinstance(init, Ensemble) else init
            _copy_matching(source, member, heads=init_readout)
            if hasattr(source, "h0_scale") and hasattr(member, "h0_scale"):
                member.h0_scale = float(source.h0_scale)
        members.append(member)
    rd = None
    if run_dir is not None:
        rd = RunDir(run_dir)
        rd.prepare()
        rd.write_config(cfg)
    ensemble = Ensemble(members).to(device)
    optimizer = make_optimizer(cfg, ensemble)
    streams = _member_streams(cfg.seed, cfg.members, device)
    run = Run(cfg, ensemble if cfg.members > 1 else members[0], run_dir=None if rd is None else rd.path)
    with torch_threads(work=3 * step_work(ensemble, cfg.batch)):
        return _trial_loop(run, ensemble, task, optimizer, streams, device, start_epoch=0, wall0=0.0,
                           progress=progress)


def _resume_trials(run: Run, task, payload: dict[str, Any], device: torch.device, meta: dict[str, Any], *,
                   progress: bool) -> Run:
    from trainers.ensemble import Ensemble

    cfg = run.config
    ensemble = run.model if isinstance(run.model, Ensemble) else Ensemble([run.model])
    ensemble = ensemble.to(device).train()
    optimizer = make_optimizer(cfg, ensemble)
    optimizer.load_state_dict(payload["optimizer"])
    rng = payload["rng"]
    streams = []
    for k in range(ensemble.size):
        st = _Streams(torch.Generator(device=device), torch.Generator())
        st.data.set_state(rng[f"data{k}"])
        st.lengths.set_state(rng[f"lengths{k}"])
        streams.append(st)
    run.model = ensemble if ensemble.size > 1 else ensemble.members[0]
    run.steps = RunDir(run.run_dir).truncate_steps(meta["epoch"])
    with torch_threads(work=3 * step_work(ensemble, cfg.batch)):
        return _trial_loop(run, ensemble, task, optimizer, streams, device, start_epoch=meta["epoch"],
                           wall0=meta["wall_seconds"], progress=progress)


def _trial_loop(run: Run, ensemble, task, optimizer, streams: list[_Streams], device, *, start_epoch: int,
                wall0: float, progress: bool) -> Run:
    """The engine's loop for trial tasks: ``steps_per_epoch`` steps of every member, evaluation of
    every member, the stopping rule (002's percentile rule), one metrics line, a checkpoint."""
    from tqdm.auto import tqdm

    from trainers.ensemble import evaluate_members, trial_epoch

    cfg = run.config
    rule = cfg.make_curriculum()
    method = cfg.make_method()
    rd = None if run.run_dir is None else RunDir(run.run_dir)
    wall = wall0
    iteration = int(run.history[-1].get("iteration", 0)) if run.history else 0
    if cfg.time_budget is not None and wall >= cfg.time_budget:
        run.stop_reason = "time_budget"
        return run
    run.stop_reason = "running"
    gens = [st.data for st in streams]
    who = f"{ensemble.size} networks" if ensemble.size > 1 else "1 network"
    bar = tqdm(total=cfg.max_epochs * cfg.steps_per_epoch, initial=start_epoch * cfg.steps_per_epoch,
               desc=f"train {task.name} ({who})", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            t0 = time.perf_counter()
            ensemble.train()
            rec, iteration = trial_epoch(ensemble, task, optimizer, cfg, gens, device, iteration=iteration,
                                         progress_bar=bar, method=method)
            train_seconds = time.perf_counter() - t0
            loss_mean = float(np.mean(rec["loss"]))
            broken = nonfinite_names(ensemble.named_parameters())
            if not math.isfinite(loss_mean) or broken:
                bad = sorted({k for row in rec["loss"] for k, v in enumerate(row) if not math.isfinite(v)}
                             | {int(n.split(".")[1]) for n in broken if n.startswith("members.")})
                what = (f"the loss of member(s) {bad} became NaN or inf" if bad else
                        f"the parameters {broken} became NaN or inf")
                raise FloatingPointError(
                    f"{what} in epoch {epoch + 1}; lower lr (now {cfg.lr}) or set clip (now {cfg.clip}). "
                    f"The last good state is in the latest checkpoint (not overwritten).")
            members_perf = evaluate_members(ensemble, task, batch=cfg.batch, batches=cfg.eval_batches,
                                            generators=gens, device=device)
            score = rule.score(members_perf) if hasattr(rule, "score") else float(np.mean(members_perf))
            solved = bool(rule.solved(members_perf))
            wall += time.perf_counter() - t0
            entry = {
                "epoch": epoch + 1, "loss": loss_mean, "metric": "performance",
                "performance": {"test": score}, "mean_performance": score,
                "members_performance": [float(v) for v in members_perf], "Ns": [], "solved": solved,
                **_tau_stats(ensemble.members[0]),
                "iteration": iteration, "wall_seconds": wall, "epoch_seconds": time.perf_counter() - t0,
                "sequences_per_s": cfg.steps_per_epoch * cfg.batch * ensemble.size / train_seconds,
                "flops": float(np.sum(rec["flops"])),
            }
            run.history.append(entry)
            run.steps.append(rec)
            if rd is not None:               # before the checkpoint: a line without one is dropped on resume
                rd.append_steps(epoch + 1, rec)
            if solved and rule.finished([]):
                run.stop_reason = "target"
            elif epoch + 1 >= cfg.max_epochs:
                run.stop_reason = "max_epochs"
            elif cfg.time_budget is not None and wall >= cfg.time_budget:
                run.stop_reason = "time_budget"
            if rd is not None:
                rd.save_latest(run, optimizer, _streams_state(streams, device), epoch=epoch + 1, wall=wall)
            bar.set_postfix_str(f"loss={loss_mean:.4f} performance={score:.3f}")
            if run.stop_reason != "running":
                break
    finally:
        bar.close()
    if run.stop_reason == "running":
        run.stop_reason = "max_epochs"
    return run


def loss_closure(model: torch.nn.Module, task, Ns: Sequence[int] | None = None, *, batch: int = 256,
                 seed: int = 0) -> tuple[Any, dict[str, torch.Tensor]]:
    """The training loss on one fixed batch as a function of the parameters, for
    :func:`dynatools.hessian_eigenvalues`: returns ``(loss_fn, params)``.

    The batch is the task's ``fixed_batch`` drawn from ``seed`` (parity/DMS: fresh sequences
    labelled for ``Ns``, heads ``0..len(Ns)-1``; sequence tasks: ``batch`` held-out test
    sequences, as the fading-memory paper's Hessians on 1000 test samples, Sec. 4.1). The loss is
    the task's training loss (``task.loss``). ``loss_fn(params)`` runs ``torch.func.functional_call``
    on a copy of the model (twice differentiable: the copy runs with ``fused = False``; ``model`` is
    not changed). ``params`` holds the trainable parameters only (``requires_grad``).

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.engine import loss_closure
    >>> net = trainers.LeakyRNN(6, n_heads=2, generator=torch.Generator().manual_seed(0)).double()
    >>> loss_fn, params = loss_closure(net, trainers.Parity(), [2, 3], batch=8)
    >>> bool(loss_fn(params) > 0)
    True
    """
    from torch.func import functional_call

    model = copy.deepcopy(model)                 # the caller's model keeps its fast fused path
    if hasattr(model, "fused"):
        model.fused = False
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    gen = torch.Generator(device=dev).manual_seed(seed)
    b = task.fixed_batch(Ns, batch, generator=gen, device=dev)
    n = b.inputs.shape[0]
    u = b.inputs.to(dtype)
    h0 = model.initial_state(n, generator=gen)
    heads = len(Ns) if Ns else 1
    wrapped = _Readout(model, heads, every_step=bool(getattr(task, "time_resolved", False)))
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def loss_fn(p: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = functional_call(wrapped, {f"model.{k}": v for k, v in p.items()}, (u, h0))
        return task.loss(logits, b)

    return loss_fn, params


class _Readout(torch.nn.Module):
    """``model(u, h0)`` then the readout of the last state (of every state for trial tasks): one
    module for functional_call."""

    def __init__(self, model: torch.nn.Module, heads: int, every_step: bool = False) -> None:
        super().__init__()
        self.model, self.heads, self.every_step = model, heads, every_step

    def forward(self, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        H = self.model(u, h0)
        return self.model.readout(H if self.every_step else H[:, -1], heads=self.heads)


__all__ = ["Run", "train", "resume", "evaluate", "loss_closure", "make_optimizer", "resolve_device", "epoch_steps"]
