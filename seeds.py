"""Seeds for every random step: one integer per (run seed, keys), stable across runs and independent of order."""
from __future__ import annotations

import hashlib

import numpy as np


def key_int(k: int | str) -> int:
    """A stable 63-bit integer for a seed key: ints as they are, strings by their sha256 (unlike hash())."""
    if isinstance(k, (int, np.integer)):
        return int(k)
    return int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") >> 1


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A numpy generator seeded from a run seed and keys (e.g. method name, image file)."""
    return np.random.default_rng([int(seed), *[key_int(k) for k in keys]])


def seed_int(seed: int, *keys: int | str, bits: int = 62) -> int:
    """One integer seed (for lime's random_state, torch generators, shap) from a run seed and keys."""
    return int(rng(seed, *keys).integers(0, 2 ** bits))
