"""Accuracy on one long sequence per trial, read out at every step (timescale paper, App. F).

The robustness analyses of the timescale paper (Sec. 4.3: ablation, perturbation, re-training)
measure accuracy this way rather than on the training batches: each trial is one random bit
sequence; after a burn-in that brings the network to its stationary state, the readout is
compared with the label at every step.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from dynatools.threads import step_work, torch_threads
from dynatools.utils import check_positive_int


def continuous_accuracy(model: torch.nn.Module, task: Any, N: int, *, head: int,
                        burn_in: int = 100, steps: int = 1000, trials: int = 10, seed: int = 0) -> np.ndarray:
    """Fraction of correct answers of ``head`` (answering ``N``) over ``steps`` steps, per trial.

    Timescale paper, Appendix F: "we simulate the RNN forward using random binary inputs for
    1000 timesteps after 100 timesteps of a burn-in period ... evaluate the accuracy of the
    network at each timestep ... over 10 trials".

    Parameters
    ----------
    model : torch.nn.Module
        With the protocol's ``forward``, ``initial_state`` and ``readout``.
    task : trainers.tasks.BinaryTask
        ``Parity`` or ``DMS`` (its encoding and rescaling k are used).
    N : int
        The task's N.
    head : int
        The readout head that answers N (head i answers ``Ns[i]`` in trainers runs; ``N - 2`` in
        the authors' multi-head networks).
    burn_in, steps, trials : int, default 100, 1000, 10
        In bits; with rescaling k > 1 the network runs k steps per bit and is read out on each
        bit's last step.
    seed : int, default=0
        Seeds the bits (drawn on the CPU, p = 0.5 as in App. F, whatever p the task trains with)
        and, through an independent stream (``numpy.random.SeedSequence``), the initial state
        (drawn on the model's device), so every model on one device sees the same inputs. The model runs where its parameters are.

    Returns
    -------
    numpy.ndarray
        ``(trials,)`` accuracies in [0, 1].

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.evaluation import continuous_accuracy
    >>> net = trainers.LeakyRNN(8, n_heads=1, generator=torch.Generator().manual_seed(0))
    >>> continuous_accuracy(net, trainers.Parity(), 2, head=0, steps=50, trials=2).shape
    (2,)
    """
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    steps = check_positive_int("steps", steps)
    trials = check_positive_int("trials", trials)
    if burn_in + 1 < N:
        raise ValueError(f"burn_in={burn_in} is shorter than N={N}: the first labels would need bits "
                         f"that were never shown; use burn_in >= N - 1.")
    p = next(model.parameters())
    dev = p.device
    with torch.no_grad():
        n_heads = model.readout(model.initial_state(1)).shape[-2]
    if not 0 <= head < n_heads:
        raise ValueError(f"head={head} but the model has {n_heads} readout head(s) (0..{n_heads - 1}).")
    bits_seed, h0_seed = (int(x) for x in np.random.SeedSequence(seed).generate_state(2))
    gen = torch.Generator().manual_seed(bits_seed)    # independent streams for the bits and h0
    length = burn_in + steps
    bits = (torch.rand(trials, length, generator=gen) < 0.5).float()
    labels = task.labels_in_time(bits, [N])[:, burn_in:, 0].long()
    u = task.encode(bits).to(device=dev, dtype=p.dtype)
    h0 = model.initial_state(trials, generator=torch.Generator(device=dev).manual_seed(h0_seed))
    with torch.no_grad(), torch_threads(work=step_work(model, trials)):
        H = model(u, h0)
        H = H[:, task.k - 1::task.k][:, burn_in:]                    # each bit's last step
        pred = model.readout(H)[..., head, :].argmax(-1).cpu()
    return (pred == labels).double().mean(1).numpy()


def accuracy_scorer(task: Any, N: int, *, head: int, **kwargs: Any) -> Callable[[torch.nn.Module], np.ndarray]:
    """``model -> continuous_accuracy(model, task, N, head=head, **kwargs)``: the ``score`` that
    :mod:`dynatools.robustness` takes (every intervention then sees the same inputs).

    Examples
    --------
    >>> import trainers
    >>> from trainers.evaluation import accuracy_scorer
    >>> score = accuracy_scorer(trainers.Parity(), 11, head=9)
    """
    return partial(continuous_accuracy, task=task, N=N, head=head, **kwargs)


__all__ = ["continuous_accuracy", "accuracy_scorer"]
