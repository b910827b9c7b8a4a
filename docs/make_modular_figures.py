"""Regenerate the fidelity figures of docs/modular.md from trained run directories.

    python docs/make_modular_figures.py --run "modular M_m=10=runs/mod_s0" --run "modular M_m=10=runs/mod_s1" \\
        --run "non-modular M=59, lr 0.1=runs/base10_s0" --run "non-modular M=59, lr 0.05=runs/base05_s0" \\
        --epochs 20 [--timescales]

Each ``--run LABEL=PATH`` is a ``trainers train`` run directory (runs sharing a label are drawn in one
colour). The script writes

- ``docs/images/modular_learning_curves.png``: N solved after every epoch (004 Fig. 2a;
  :func:`trainers.pareto.learning_curves`);
- ``docs/images/modular_pareto.png``: N solved after ``--epochs`` epochs against the parameters
  trained up to it (004 Fig. 2b; :func:`trainers.pareto.pareto_table`);
- with ``--timescales``, ``docs/images/modular_timescales.png``: trained and effective timescales
  per solved N (004 Fig. 4; :func:`trainers.modular_timescales.module_timescales`, 10^5 steps per
  network, cached in each run's ``analysis/`` folder);

and prints the tables that docs/modular.md quotes. The runs of the docs are listed there
("Learning curves at 004's scale").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"


def _runs(items: list[str]) -> tuple[list[str], list[Path]]:
    labels, paths = [], []
    for item in items:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise SystemExit(f"--run {item!r}: give LABEL=PATH")
        labels.append(label)
        paths.append(Path(path))
    return labels, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=PATH",
                        help="a run directory and its label (repeat)")
    parser.add_argument("--epochs", type=int, default=20, help="epoch limit of the Pareto plot (default 20)")
    parser.add_argument("--timescales", action="store_true", help="also Fig. 4 (records 1e5 steps per solved N)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the figures (default docs/images)")
    args = parser.parse_args(argv)

    from trainers.pareto import learning_curves, pareto_table, plot_learning_curves, plot_pareto

    labels, paths = _runs(args.run)
    curves = learning_curves(paths, labels=labels)
    print("N solved after epoch:")
    for e in (10, 15, 20, 25, 30, 40, 60):
        if e <= curves.sizes["epoch"]:
            values = curves["n_solved"].sel(epoch=e).values
            print(f"  {e:3d}: " + ", ".join(f"{lab} {v:.0f}" if np.isfinite(v) else f"{lab} -"
                                           for lab, v in zip(labels, values)))
    first = {}
    for lab, row in zip(labels, curves["n_solved"].values):
        hit = np.flatnonzero(row >= 16)
        first.setdefault(lab, []).append(int(curves["epoch"].values[hit[0]]) if hit.size else None)
    print("epochs to solve N = 2..16 (the first 15 N):", first)
    ax = plot_learning_curves(curves)
    e = curves["epoch"].values
    ax.plot(e, e + 1, ":", color="0.5", lw=1, label="one N per epoch (004, M_m >= 10)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("004 Fig. 2a: N solved per epoch (parity)", fontsize=9)
    ax.figure.tight_layout()
    ax.figure.savefig(args.out / "modular_learning_curves.png", dpi=130)
    plt.close("all")

    table = pareto_table(paths, epochs=args.epochs)
    print(f"Pareto table at {args.epochs} epochs:")
    for lab, arch, n, p in zip(labels, table["architecture"].values, table["n_solved"].values,
                               table["parameters"].values):
        print(f"  {lab:40s} {arch:12s} N solved {int(n):3d}  parameters {int(p):6d}")
    params = table["parameters"].values
    ax = plot_pareto(table, log=bool(params.max() > 10 * params.min()))   # log axis only over a decade
    ax.figure.tight_layout()
    ax.figure.savefig(args.out / "modular_pareto.png", dpi=130)
    plt.close("all")

    if args.timescales:
        from trainers.modular_timescales import module_timescales, plot_module_timescales

        data: dict[str, list] = {}
        for lab, path in zip(labels, paths):
            ds = module_timescales(path, progress=False)
            data.setdefault(lab, []).append(ds)
            print(f"{lab} ({path.name}): trained / effective tau per N")
            for N, t, e in zip(ds["N"].values, ds["tau_mean"].values, ds["tau_net_mean"].values):
                print(f"  N={int(N):3d}  {t:6.2f}  {e:6.2f}")
        fig = plot_module_timescales(data)
        fig.savefig(args.out / "modular_timescales.png", dpi=130)
        plt.close("all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
