"""Class-balanced splits of multi-label data (iterative stratification, Sechidis et al. 2011).

`balanced_split` assigns every image to a split so that each class is present in about the
target share of its images in each split, rare classes first, where a random split easily puts
all images of a rare class on one side.
"""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def balanced_split(presence, shares=(0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Split index (0..len(shares)-1) of every image.

    Args:
        presence: bool [num_images, num_classes], whether each class appears in each image.
        shares: target share of the images of each split (normalized to sum to 1).
        seed: tie-breaking and visiting order; the result is deterministic given the seed.

    Returns:
        int array [num_images].
    """
    presence = np.asarray(presence, bool)
    shares = np.asarray(shares, np.float64)
    if presence.ndim != 2 or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"presence must be [images, classes] and shares non-negative. Received: "
                         f"presence {presence.shape}, shares {shares.tolist()}")
    shares = shares / shares.sum()
    rng = np.random.default_rng(seed)
    need_images = shares * len(presence)  # images each split still wants
    need_class = shares[:, None] * presence.sum(0)[None, :]  # [splits, classes] still wanted
    split = np.full(len(presence), -1)
    while True:
        open_ = split < 0
        counts = presence[open_].sum(0)
        if not counts.any():
            break
        rarest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        for i in rng.permutation(np.flatnonzero(open_ & presence[:, rarest])):
            s = _neediest(need_class[:, rarest], need_images, rng)
            split[i] = s
            need_class[s] -= presence[i]
            need_images[s] -= 1
    for i in rng.permutation(np.flatnonzero(split < 0)):  # images with no class at all
        s = _neediest(need_images, need_images, rng)
        split[i] = s
        need_images[s] -= 1
    return split


def _neediest(need: np.ndarray, need_images: np.ndarray, rng) -> int:
    """The split that needs the most; ties go to the one needing the most images, then random."""
    best = np.flatnonzero(need == need.max())
    best = best[need_images[best] == need_images[best].max()]
    return int(rng.choice(best))
