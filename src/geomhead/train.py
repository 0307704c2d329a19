"""Deterministic, resumable SSL pretraining of one run, with collapse dynamics and snapshots.

Outputs of a run (written only when it finishes, each atomically, the final weights last):
``dynamics.nc`` (see :mod:`geomhead.dynamics`), ``snapshots/`` (``tracking.pt`` with the fixed
tracking batch, and ``step_XXXXXXXX.pt`` with the head's weights and the backbone representations
of both views of that batch) and ``model.pt`` (final weights). Resumable state lives in a separate
folder (``resume/``) that is not a rule output: a checkpoint every ``train.checkpoint_every`` steps
with the model, optimiser, EMA target, every RNG state, the step and the metrics so far. A killed
run restarted with the same config resumes there and ends bitwise identical to an uninterrupted
run (on CPU), because every random draw comes from a generator derived from (seed, purpose, step).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor
from tqdm import tqdm

from geomhead import augment
from geomhead.atomic import replace_dir, torch_load, torch_save
from geomhead.config import logged_steps, snapshot_steps
from geomhead.cube import write_netcdf
from geomhead.data import ImageDataset, load_dataset
from geomhead.dynamics import DynamicsRecord, to_dataset
from geomhead.losses import ssl_loss
from geomhead.metrics import covariance_spectrum, flat_params, grad_norm, normalized_std, relative_update
from geomhead.model import GROUPS, SSLModel, build_model
from geomhead.seeding import choose_device, generator, rng_state, seed_everything, set_rng_state

CHECKPOINT = "checkpoint.pt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the run, the step and the last good checkpoint."""


@dataclass(frozen=True)
class RunPaths:
    """Where one run writes: three outputs and the resumable-state folder."""

    model: Path
    snapshots: Path
    dynamics: Path
    resume: Path

    @classmethod
    def under(cls, out_dir: str | Path, resume_dir: str | Path) -> RunPaths:
        """The standard layout ``out_dir/{model.pt,snapshots,dynamics.nc}``."""
        out = Path(out_dir)
        return cls(out / "model.pt", out / "snapshots", out / "dynamics.nc", Path(resume_dir))


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical config JSON; a checkpoint resumes only under the same hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def _features(model: SSLModel, x: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Backbone and projector outputs of ``x`` in the model's current (train) mode, in chunks,
    leaving BatchNorm running statistics exactly as they were."""
    saved = {name: buf.clone() for name, buf in model.named_buffers()}
    zs, hs = [], []
    for part in x.split(chunk):
        z = model.backbone(part)
        zs.append(z)
        hs.append(model.projector(z))
    for name, buf in model.named_buffers():
        buf.copy_(saved[name])
    return torch.cat(zs), torch.cat(hs)


class Trainer:
    """One run's training loop; :meth:`run` trains (or resumes) and writes the outputs."""

    def __init__(
        self, config: Mapping[str, Any], dataset: ImageDataset, paths: RunPaths, threads: int | None = None, log: IO[str] | None = None
    ) -> None:
        self.config = dict(config)
        self.run_id: str = config["run"]["id"]
        self.seed: int = config["run"]["seed"]
        self.paths = paths
        self.log = log if log is not None else sys.stderr
        train = config["train"]
        if threads:
            torch.set_num_threads(threads)
        seed_everything(self.seed, deterministic=train["deterministic"])
        self.device = choose_device(train["device"])
        self.steps: int = train["steps"]
        self.batch_size: int = train["batch_size"]
        self.aug = augment.AugmentConfig.from_dict(config["augment"])
        self.x_train = torch.as_tensor(dataset.x_train, device=self.device)
        if len(self.x_train) < self.batch_size:
            raise ValueError(f"train.batch_size {self.batch_size} exceeds the {len(self.x_train)} training images of {dataset.name}")
        self.steps_per_epoch = len(self.x_train) // self.batch_size
        self.model = build_model(config, dataset.image_shape).to(self.device).train()
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config["run"]["lr"],
            momentum=train["momentum"],
            weight_decay=train["weight_decay"],
        )
        sched = config["schedule"]
        self.logged = set(logged_steps(self.steps, sched["dense_until"], sched["dense_every"], sched["every"]))
        self.snapshot_at = set(snapshot_steps({"schedule": sched, "train": train}))
        self.records: list[DynamicsRecord] = []
        self.hash = config_hash(config)
        self._order_cache: tuple[int, Tensor] | None = None
        self._tracking(dataset)
        self._spectrum_set(dataset)

    # ----- fixed evaluation sets -------------------------------------------------------------
    def _tracking(self, dataset: ImageDataset) -> None:
        """The fixed tracking batch: the first test images, two views from a split-seeded generator."""
        n = min(self.config["tracking"]["batch_size"], len(dataset.x_test))
        x = torch.as_tensor(dataset.x_test[:n])
        gen = generator(self.config["data"]["split_seed"], "tracking")
        self.tracking = {"x": x, "y": torch.as_tensor(dataset.y_test[:n])}
        for view in ("1", "2"):
            params, noise = augment.sample_params(self.aug, n, gen, image_shape=dataset.image_shape)
            self.tracking[f"x{view}"] = self._apply(x, params, noise)
            self.tracking.update({f"view{view}_{k}": v for k, v in params.items()})
            self.tracking.update({f"view{view}_flip": noise.flip, f"view{view}_eps": noise.eps})

    def _apply(self, x: Tensor, params: dict[str, Tensor], noise: augment.AugmentNoise) -> Tensor:
        return augment.apply(
            x, params, noise, interpolation=self.aug.interpolation, padding_mode=self.aug.padding_mode, clamp=self.aug.clamp
        )

    def _spectrum_set(self, dataset: ImageDataset) -> None:
        """Augmented training images for the feature spectra: at least 2x the largest feature
        dimension (never rank-deficient), rounded up to whole batches."""
        model_cfg = self.config["model"]
        need = max(self.config["tracking"]["spectrum_samples"], 2 * max(model_cfg["head_out"], model_cfg["z_dim"]) + 1)
        n = -(-need // self.batch_size) * self.batch_size
        gen = generator(self.config["data"]["split_seed"], "spectrum")
        idx = torch.randint(len(dataset.x_train), (n,), generator=gen)
        x = torch.as_tensor(dataset.x_train)[idx]
        params, noise = augment.sample_params(self.aug, n, gen, image_shape=dataset.image_shape)
        self.spectrum_x = self._apply(x, params, noise).to(self.device)

    # ----- data ------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Two views of batch ``step``: epoch-wise permutation (drop_last), per-step augmentation."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._order_cache is None or self._order_cache[0] != epoch:
            perm = torch.randperm(len(self.x_train), generator=generator(self.seed, "order", epoch))
            self._order_cache = (epoch, perm.to(self.device))
        idx = self._order_cache[1][pos * self.batch_size : (pos + 1) * self.batch_size]
        x = self.x_train[idx]
        return augment.two_views(x, self.aug, generator(self.seed, "augment", step))

    def loss(self, out: dict[str, Tensor]) -> Tensor:
        """The run's SSL loss on the model outputs."""
        return ssl_loss(self.config["run"]["loss"], out, **self.config["loss_settings"])

    # ----- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        """Everything needed to continue at ``step``, written atomically."""
        torch_save(
            {
                "step": step,
                "config_hash": self.hash,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(),
                "records": [r.as_state() for r in self.records],
            },
            self.paths.resume / CHECKPOINT,
        )

    def load_checkpoint(self) -> int:
        """Restore the last checkpoint of this config; returns the step to continue from (0 if none)."""
        path = self.paths.resume / CHECKPOINT
        if not path.is_file():
            return 0
        state = torch_load(path, map_location=self.device)
        if state["config_hash"] != self.hash:
            print(f"[{self.run_id}] checkpoint {path} belongs to another config; starting afresh", file=self.log)
            shutil.rmtree(self.paths.resume)
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state({k: v.cpu() for k, v in state["rng"].items()})
        self.records = [DynamicsRecord.from_state(r) for r in state["records"]]
        step = int(state["step"])
        for snap in (self.paths.resume / "snapshots").glob("step_*.pt"):
            if int(snap.stem.split("_")[1]) >= step:
                snap.unlink()
        print(f"[{self.run_id}] resumed from {path} at step {step}", file=self.log)
        return step

    def save_snapshot(self, step: int) -> None:
        """Head weights and the tracking batch's representations at ``step``."""
        folder = self.paths.resume / "snapshots"
        if not (folder / "tracking.pt").is_file():
            torch_save(self.tracking, folder / "tracking.pt")
        x = torch.cat([self.tracking["x1"], self.tracking["x2"]]).to(self.device)
        z, _ = _features(self.model, x, chunk=len(x))
        n = len(self.tracking["x1"])
        snap: dict[str, Any] = {
            "step": step,
            "z1": z[:n].cpu(),
            "z2": z[n:].cpu(),
            "projector": {k: v.cpu() for k, v in self.model.projector.state_dict().items()},
        }
        if self.model.predictor is not None:
            snap["predictor"] = {k: v.cpu() for k, v in self.model.predictor.state_dict().items()}
        torch_save(snap, folder / f"step_{step:08d}.pt")

    # ----- metrics -----------------------------------------------------------------------------
    def spectra(self) -> tuple[Tensor, Tensor]:
        """Covariance spectra (projector, backbone) of the spectrum set at the current weights.

        Run before the training forward pass: restoring BatchNorm buffers afterwards would bump
        the version of tensors that autograd saved for the backward pass.
        """
        z_spec, h_spec = _features(self.model, self.spectrum_x, self.batch_size)
        return covariance_spectrum(h_spec), covariance_spectrum(z_spec)

    def record(self, step: int, loss: Tensor, out: dict[str, Tensor], spectra: tuple[Tensor, Tensor]) -> DynamicsRecord:
        """Forward-pass metrics of a logged step (gradients and updates are filled in later)."""
        rec = DynamicsRecord(
            step=step,
            loss=float(loss.detach()),
            proj_std=float(normalized_std(torch.cat([out["h1"], out["h2"]]))),
            z_std=float(normalized_std(torch.cat([out["z1"], out["z2"]]))),
            proj_eigenvalues=spectra[0].cpu().numpy(),
            z_eigenvalues=spectra[1].cpu().numpy(),
        )
        self.records.append(rec)
        return rec

    # ----- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Train (resuming if a checkpoint exists) and write the outputs."""
        start = self.load_checkpoint()
        every = self.config["train"]["checkpoint_every"]
        bar = tqdm(total=self.steps, initial=start, desc=self.run_id, file=self.log, mininterval=2.0, dynamic_ncols=False, ascii=True)
        t0 = time.perf_counter()
        for step in range(start, self.steps):
            if step in self.snapshot_at:
                self.save_snapshot(step)
            self.train_step(step)
            if (step + 1) % every == 0 and step + 1 < self.steps:
                self.save_checkpoint(step + 1)
            bar.update(1)
        bar.close()
        self.final_record()
        print(f"[{self.run_id}] trained {self.steps - start} steps in {time.perf_counter() - t0:.1f} s", file=self.log)
        self.write_outputs()

    def train_step(self, step: int) -> None:
        """Update ``step + 1``: forward, loss, NaN guard, backward, SGD step, EMA, logging."""
        logged = step in self.logged
        spectra = self.spectra() if logged else None
        x1, x2 = self.batch(step)
        out = self.model(x1, x2)
        loss = self.loss(out)
        if not torch.isfinite(loss):
            ckpt = self.paths.resume / CHECKPOINT
            kept = f"last good checkpoint kept at {ckpt}" if ckpt.is_file() else "no checkpoint was written yet"
            raise TrainingDivergedError(f"run {self.run_id}: loss is {float(loss.detach())} at step {step}; {kept}")
        rec = self.record(step, loss, out, spectra) if spectra is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = {}
        if rec is not None:
            for group in GROUPS:
                params = list(self.model.group_parameters(group))
                if params:
                    rec.grad_norm[group] = grad_norm(params)
                    before[group] = flat_params(params)
        self.optimizer.step()
        self.model.update_target()
        if rec is not None:
            for group, old in before.items():
                rec.rel_update[group] = relative_update(old, flat_params(self.model.group_parameters(group)))

    def final_record(self) -> None:
        """Metrics and snapshot of the final state (step = steps): forward and gradient, no update."""
        if self.steps in self.snapshot_at:
            self.save_snapshot(self.steps)
        spectra = self.spectra()
        x1, x2 = self.batch(self.steps)
        out = self.model(x1, x2)
        loss = self.loss(out)
        rec = self.record(self.steps, loss, out, spectra)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in GROUPS:
            params = list(self.model.group_parameters(group))
            if params:
                rec.grad_norm[group] = grad_norm(params)
        self.optimizer.zero_grad(set_to_none=True)

    def write_outputs(self) -> None:
        """Dynamics, snapshots, then final weights (each atomic); then drop the resumable state."""
        ds = to_dataset(self.records, self.config["run"], self.config, len(self.spectrum_x))
        write_netcdf(ds, self.paths.dynamics)
        staging = self.paths.snapshots.with_name(f".{self.paths.snapshots.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.paths.resume / "snapshots", staging)
        replace_dir(staging, self.paths.snapshots)
        torch_save(
            {
                "step": self.steps,
                "run_id": self.run_id,
                "config_json": json.dumps(self.config, sort_keys=True),
                **{name: module.state_dict() for name, module in self.model.named_children()},
            },
            self.paths.model,
        )
        shutil.rmtree(self.paths.resume, ignore_errors=True)
        with contextlib.suppress(OSError):  # the shared parent, once no run is unfinished
            self.paths.resume.parent.rmdir()


def pretrain(
    config: Mapping[str, Any], data_path: str | Path, paths: RunPaths, threads: int | None = None, log: IO[str] | None = None
) -> None:
    """Train one run from its resolved config (:func:`geomhead.config.run_config`) on a prepared dataset."""
    dataset = load_dataset(data_path)
    Trainer(config, dataset, paths, threads=threads, log=log).run()


def load_model(path: str | Path, image_shape: tuple[int, int, int] | None = None) -> tuple[SSLModel, dict[str, Any]]:
    """Rebuild a trained model from ``model.pt`` (``weights_only=True``); returns (model, config)."""
    state = torch_load(path)
    config = json.loads(state["config_json"])
    shape = image_shape or _image_shape(config)
    model = build_model(config, shape)
    for name, module in model.named_children():
        module.load_state_dict(state[name])
    return model.eval(), config


def _image_shape(config: Mapping[str, Any]) -> tuple[int, int, int]:
    return (1, 8, 8) if config["data"]["dataset"] == "digits" else (3, 32, 32)
