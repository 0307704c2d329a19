"""Collapse dynamics of one run (the paper's Experiment 1, done right) as an xarray Dataset.

At each logged step t (the state after t updates, measured on the forward pass of update t+1):
the loss; the std of L2-normalised projector outputs and backbone outputs (paper's "variance");
the full covariance spectrum of both, from enough augmented samples that it is not rank-deficient,
with effective rank and condition number; gradient norms and relative parameter displacements
of backbone, projector and predictor (momentum included).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from geomhead.cube import attrs, provenance
from geomhead.metrics import condition_number, effective_rank
from geomhead.model import GROUPS


@dataclass
class DynamicsRecord:
    """Metrics of one logged step (NaN where not applicable, e.g. no predictor, or the final step)."""

    step: int
    loss: float
    proj_std: float
    z_std: float
    proj_eigenvalues: np.ndarray
    z_eigenvalues: np.ndarray
    grad_norm: dict[str, float] = field(default_factory=dict)
    rel_update: dict[str, float] = field(default_factory=dict)

    def as_state(self) -> dict[str, Any]:
        """Plain types for a checkpoint (``torch.load(weights_only=True)`` can read them back)."""
        return {
            "step": self.step,
            "loss": self.loss,
            "proj_std": self.proj_std,
            "z_std": self.z_std,
            "proj_eigenvalues": self.proj_eigenvalues.tolist(),
            "z_eigenvalues": self.z_eigenvalues.tolist(),
            "grad_norm": dict(self.grad_norm),
            "rel_update": dict(self.rel_update),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DynamicsRecord:
        """Inverse of :meth:`as_state`."""
        return cls(
            step=int(state["step"]),
            loss=float(state["loss"]),
            proj_std=float(state["proj_std"]),
            z_std=float(state["z_std"]),
            proj_eigenvalues=np.asarray(state["proj_eigenvalues"], dtype=np.float64),
            z_eigenvalues=np.asarray(state["z_eigenvalues"], dtype=np.float64),
            grad_norm=dict(state["grad_norm"]),
            rel_update=dict(state["rel_update"]),
        )


def _per_step(fn: Callable[[torch.Tensor], torch.Tensor], lam: np.ndarray) -> np.ndarray:
    """Apply a batched spectrum summary of :mod:`geomhead.metrics` to ``(step, eig)`` eigenvalues."""
    return fn(torch.from_numpy(lam)).numpy()


def to_dataset(records: Sequence[DynamicsRecord], run: Mapping[str, Any], config: Mapping[str, Any], spectrum_samples: int) -> xr.Dataset:
    """The per-run dynamics Dataset with dims ``step``, ``group``, ``proj_eig_index``, ``z_eig_index``."""
    steps = np.array([r.step for r in records], dtype=np.int64)
    proj = np.stack([r.proj_eigenvalues for r in records])
    z = np.stack([r.z_eigenvalues for r in records])

    def per_group(name: str) -> np.ndarray:
        return np.array([[getattr(r, name).get(g, np.nan) for g in GROUPS] for r in records], dtype=np.float64)

    step_dim = ("step",)
    ds = xr.Dataset(
        {
            "loss_value": (step_dim, [r.loss for r in records], attrs("training loss on the batch of update step+1", "1")),
            "proj_std": (
                step_dim,
                [r.proj_std for r in records],
                attrs(
                    "mean per-dimension std of L2-normalised projector outputs (paper's 'variance')",
                    "1",
                    comment="training batch, both views, unbiased std",
                ),
            ),
            "z_std": (
                step_dim,
                [r.z_std for r in records],
                attrs("mean per-dimension std of L2-normalised backbone representations z", "1"),
            ),
            "proj_eigenvalue": (
                ("step", "proj_eig_index"),
                proj,
                attrs("eigenvalues of the covariance of L2-normalised projector outputs, descending", "1"),
            ),
            "z_eigenvalue": (
                ("step", "z_eig_index"),
                z,
                attrs("eigenvalues of the covariance of L2-normalised backbone representations, descending", "1"),
            ),
            "proj_effective_rank": (
                step_dim,
                _per_step(effective_rank, proj),
                attrs("effective rank exp(H(p)) of the projector-output covariance", "1"),
            ),
            "z_effective_rank": (step_dim, _per_step(effective_rank, z), attrs("effective rank exp(H(p)) of the backbone covariance", "1")),
            "proj_condition_number": (
                step_dim,
                _per_step(condition_number, proj),
                attrs("condition number lambda_max/lambda_min of the projector-output covariance", "1"),
            ),
            "z_condition_number": (
                step_dim,
                _per_step(condition_number, z),
                attrs("condition number lambda_max/lambda_min of the backbone covariance", "1"),
            ),
            "grad_norm": (
                ("step", "group"),
                per_group("grad_norm"),
                attrs("L2 norm of the loss gradient w.r.t. the group's parameters", "1"),
            ),
            "rel_update": (
                ("step", "group"),
                per_group("rel_update"),
                attrs("relative parameter displacement ||w_{t+1} - w_t|| / ||w_t|| of the optimiser step (momentum included)", "1"),
            ),
        },
        coords={
            "step": ("step", steps, attrs("optimiser updates applied", "1")),
            "group": ("group", list(GROUPS), attrs("parameter group", "1")),
            "proj_eig_index": ("proj_eig_index", np.arange(proj.shape[1]), attrs("eigenvalue index (0 = largest)", "1")),
            "z_eig_index": ("z_eig_index", np.arange(z.shape[1]), attrs("eigenvalue index (0 = largest)", "1")),
        },
    )
    ds.attrs = provenance(
        f"geomhead collapse dynamics of run {run['id']}",
        run_json=json.dumps({k: run[k] for k in ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed")}),
        config_json=json.dumps(config, sort_keys=True),
        spectrum_samples=int(spectrum_samples),
    )
    return ds
