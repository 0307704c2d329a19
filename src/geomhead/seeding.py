"""Seeds, RNG states and device choice, so that a run is bitwise reproducible on CPU.

Randomness that shapes training (data order, augmentation parameters, noise) comes from
generators derived from ``(seed, purpose, index)`` with :func:`derive_seed`, so it does not
depend on how many random numbers were drawn before: resuming at step t draws exactly what an
uninterrupted run draws at step t. The global RNG states are still saved in checkpoints.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

PURPOSES = {"init": 0, "order": 1, "augment": 2, "tracking": 3, "spectrum": 4}


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for ``(seed, purpose, index)`` from numpy's SeedSequence (well mixed, stable)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} unknown; allowed: {', '.join(PURPOSES)}")
    state = np.random.SeedSequence([int(seed), PURPOSES[purpose], int(index)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def generator(seed: int, purpose: str, index: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with :func:`derive_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, purpose, index))
    return gen


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict[str, Any]:
    """Every global RNG state (python, numpy, torch CPU and CUDA) as tensors, for checkpoints."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": torch.tensor(py[0]),
        "python_state": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": torch.tensor(float("nan") if py[2] is None else py[2], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor(np_state[2]),
        "numpy_has_gauss": torch.tensor(np_state[3]),
        "numpy_gauss": torch.tensor(np_state[4], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    gauss = float(state["python_gauss"])
    random.setstate(
        (int(state["python_version"]), tuple(int(v) for v in state["python_state"].tolist()), None if np.isnan(gauss) else gauss)
    )
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(state["numpy_has_gauss"]),
            float(state["numpy_gauss"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} unknown; allowed: auto, cpu, cuda")
    return torch.device(name)
