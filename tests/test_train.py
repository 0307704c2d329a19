"""Pretraining: determinism, resume after a real kill, NaN guard, outputs and their format."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xarray as xr
import yaml

from geomhead.atomic import torch_load
from geomhead.config import run_config
from geomhead.train import CHECKPOINT, RunPaths, Trainer, TrainingDivergedError, load_model, pretrain

RUN = "simsiam-swish-d2-bn0-collapsed-lr0.05-s0"


def _train(params: dict, run: str, data: Path, root: Path) -> RunPaths:
    paths = RunPaths.under(root / "out", root / "resume")
    pretrain(run_config(params, run), data, paths, threads=1)
    return paths


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch_load(path)
    return {f"{m}.{k}": v for m in ("backbone", "projector", "predictor") if m in state for k, v in state[m].items()}


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_outputs_and_their_format(tiny_params: dict, digits_npz: Path, tmp_path: Path) -> None:
    paths = _train(tiny_params, RUN, digits_npz, tmp_path)
    assert paths.model.is_file() and paths.dynamics.is_file() and paths.snapshots.is_dir()
    assert not paths.resume.exists(), "resumable state must be dropped once the outputs exist"
    with xr.open_dataset(paths.dynamics) as ds:
        assert list(ds["step"].values) == [0, 2, 4, 6, 8, 16, 24]
        for name, var in ds.variables.items():
            assert var.attrs.get("units") and var.attrs.get("long_name"), name
        assert ds.sizes["proj_eig_index"] == 32 and ds.sizes["z_eig_index"] == 16
        # never rank-deficient: every eigenvalue of the spectrum set's covariance is positive
        assert float(ds["proj_eigenvalue"].min()) > 0
        assert (ds["rel_update"].sel(group="projector").isel(step=slice(0, -1)) > 0).all()
        assert set(ds.attrs) >= {"Conventions", "source", "history", "references", "config_json", "run_json"}
    snaps = sorted(p.name for p in paths.snapshots.glob("step_*.pt"))
    assert snaps == ["step_00000000.pt", "step_00000004.pt", "step_00000008.pt", "step_00000024.pt"]
    snap = torch_load(paths.snapshots / "step_00000004.pt")
    assert snap["step"] == 4 and snap["z1"].shape == (16, 16) and snap["z2"].shape == (16, 16)
    assert {"projector", "predictor"} <= set(snap)
    tracking = torch_load(paths.snapshots / "tracking.pt")
    assert tracking["x"].shape == (16, 1, 8, 8)
    model, config = load_model(paths.model)
    assert config["run"]["id"] == RUN
    head = model.projector
    head.load_state_dict(torch_load(paths.snapshots / "step_00000024.pt")["projector"])


def test_same_params_give_bitwise_identical_weights(tiny_params: dict, digits_npz: Path, tmp_path: Path) -> None:
    a = _train(tiny_params, RUN, digits_npz, tmp_path / "a")
    b = _train(tiny_params, RUN, digits_npz, tmp_path / "b")
    _assert_bitwise_equal(_weights(a.model), _weights(b.model))
    c = _train(tiny_params, RUN.replace("-s0", "-s1"), digits_npz, tmp_path / "c")
    assert not torch.equal(_weights(a.model)["projector.blocks.0.0.weight"], _weights(c.model)["projector.blocks.0.0.weight"])


def test_nan_loss_stops_with_run_and_step_and_keeps_checkpoint(
    tiny_params: dict, digits_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geomhead.data import load_dataset

    paths = RunPaths.under(tmp_path / "out", tmp_path / "resume")
    trainer = Trainer(run_config(tiny_params, RUN), load_dataset(digits_npz), paths, threads=1)
    original = trainer.loss
    calls = {"n": 0}

    def poisoned(out: dict) -> torch.Tensor:
        calls["n"] += 1
        loss = original(out)
        return loss * float("nan") if calls["n"] > 11 else loss

    monkeypatch.setattr(trainer, "loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=rf"run {RUN}: loss is nan at step 11; last good checkpoint kept"):
        trainer.run()
    assert torch_load(paths.resume / CHECKPOINT)["step"] == 8
    assert not paths.model.exists() and not paths.dynamics.exists() and not paths.snapshots.exists()


def test_checkpoint_of_another_config_is_not_resumed(tiny_params: dict, digits_npz: Path, tmp_path: Path) -> None:
    from geomhead.data import load_dataset

    paths = RunPaths.under(tmp_path / "out", tmp_path / "resume")
    config = run_config(tiny_params, RUN)
    trainer = Trainer(config, load_dataset(digits_npz), paths, threads=1)
    trainer.save_checkpoint(8)
    other = copy.deepcopy(config)
    other["train"]["momentum"] = 0.5
    assert Trainer(other, load_dataset(digits_npz), paths, threads=1).load_checkpoint() == 0
    assert Trainer(config, load_dataset(digits_npz), paths, threads=1).load_checkpoint() == 0  # removed


def test_killed_run_resumes_bitwise(tiny_params: dict, digits_npz: Path, tmp_path: Path) -> None:
    """Kill a real training subprocess after its second checkpoint, restart it, compare weights."""
    params = copy.deepcopy(tiny_params)
    params["train"].update(steps=400, checkpoint_every=40)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "geomhead.cli", "pretrain", "--params", str(params_file), "--run", RUN, "--data", str(digits_npz),
                "--out", str(tmp_path / name / "out"), "--resume-dir", str(tmp_path / name / "resume"), "--threads", "1"]  # fmt: skip

    ckpt = tmp_path / "killed" / "resume" / CHECKPOINT
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(command("killed"), stdout=subprocess.DEVNULL, stderr=handle)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.is_file() and torch_load(ckpt)["step"] >= 80:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {log.read_text()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = torch_load(ckpt)["step"]
    assert 80 <= killed_at < 400
    assert not (tmp_path / "killed" / "out" / "model.pt").exists()

    resumed = subprocess.run(command("killed"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ckpt} at step {killed_at}" in resumed.stderr
    straight = subprocess.run(command("straight"), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    _assert_bitwise_equal(_weights(tmp_path / "killed" / "out" / "model.pt"), _weights(tmp_path / "straight" / "out" / "model.pt"))
    with (
        xr.open_dataset(tmp_path / "killed" / "out" / "dynamics.nc") as a,
        xr.open_dataset(tmp_path / "straight" / "out" / "dynamics.nc") as b,
    ):
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


@pytest.mark.parametrize(
    ("loss", "backbone", "batchnorm", "depth"),
    [
        ("byol", "mlp", True, 3),
        ("ntxent", "resnet_small", False, 1),
        ("barlow", "vit_small", True, 2),
        ("infonce", "mlp", False, 2),
    ],
)
def test_every_loss_backbone_and_head_trains(
    tiny_params: dict, digits_npz: Path, tmp_path: Path, loss: str, backbone: str, batchnorm: bool, depth: int
) -> None:
    params = copy.deepcopy(tiny_params)
    params["train"].update(steps=4, batch_size=32)
    params["schedule"].update(dense_until=4, dense_every=2, every=2)
    params["model"].update(backbone=backbone, backbone_width=8, z_dim=16 if backbone != "vit_small" else 12)
    params["sweep"] = {
        "grid": None,
        "include": [{"loss": loss, "activation": "gelu", "depth": depth, "batchnorm": batchnorm, "init": "normal", "lr": 0.05, "seed": 0}],
    }
    run_id = f"{loss}-gelu-d{depth}-bn{int(batchnorm)}-normal-lr0.05-s0"
    paths = _train(params, run_id, digits_npz, tmp_path)
    with xr.open_dataset(paths.dynamics) as ds:
        assert ds["loss_value"].notnull().all()
        assert bool(ds["grad_norm"].sel(group="predictor").notnull().any()) == (loss == "byol")
    state = torch_load(paths.model)
    assert ("target_projector" in state) == (loss == "byol")
