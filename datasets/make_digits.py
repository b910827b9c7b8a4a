"""Regenerate dynatools/data/digits_8x8.npz (shipped in the package): scikit-learn's 8x8 handwritten digits as uint8 arrays.

The data are the test set of the UCI "Optical Recognition of Handwritten Digits" dataset
(E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), as shipped with scikit-learn (1797 images of 8x8
pixels with values 0..16, labels 0..9). Shipped so that the fading-memory tasks have a small
sequence-classification benchmark that needs no download (`trainers.tasks.Digits`).

Run (needs scikit-learn, only for regenerating): ``pip install scikit-learn && python datasets/make_digits.py``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    out = Path(__file__).resolve().parent.parent / "dynatools" / "data" / "digits_8x8.npz"
    np.savez_compressed(out, images=d.data.astype(np.uint8), labels=d.target.astype(np.uint8),
                        source=np.array("UCI Optical Recognition of Handwritten Digits (test set), "
                                        "via scikit-learn load_digits; CC BY 4.0"))
    print(f"wrote {out}: {d.data.shape[0]} images")


if __name__ == "__main__":
    main()
