"""The curvature API (geomhead.curvature): paths agree, readings behave as PAPER §8.1 says, bad input fails early,
and a real tiny run gives a labelled Dataset that geomhead.cube.combine accepts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import xarray as xr

from geomhead.config import run_config
from geomhead.cube import check_attrs, combine, write_netcdf
from geomhead.curvature import TERMS, curvature_of_run, head_curvature
from geomhead.heads import ProjectionHead
from geomhead.losses import ssl_loss
from geomhead.train import RunPaths, pretrain

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
D, HID, K, PH, N = 5, 10, 8, 4, 6


def _heads(act: str = "swish", bn: bool = False, seed: int = 0) -> tuple[ProjectionHead, ProjectionHead]:
    torch.manual_seed(seed)
    return ProjectionHead(D, HID, K, 2, act, bn), ProjectionHead(K, PH, K, 2, act, bn)


def _z(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=gen), torch.randn(N, D, generator=gen)


def _close(a: torch.Tensor, b: torch.Tensor, scale: float, tol: float) -> bool:
    return float((a - b).abs().max()) <= tol * scale


@pytest.mark.parametrize(("loss", "wrt"), [("simsiam", "view1"), ("simsiam", "both"), ("byol", "view1"), ("infonce", "view1")])
def test_per_sample_and_coupled_paths_agree(loss: str, wrt: str) -> None:
    proj, pred = _heads()
    predictor = None if loss == "infonce" else pred
    settings = {"temperature": 0.2} if loss == "infonce" else {}
    z1, z2 = _z()
    common = {"wrt": wrt, "k": 3, "tol": 1e-10}
    exact = head_curvature(proj, predictor, loss, settings, z1, z2, path="per_sample", **common)  # type: ignore[arg-type]
    dense = head_curvature(proj, predictor, loss, settings, z1, z2, path="coupled", dense_threshold=10**6, **common)  # type: ignore[arg-type]
    for a, b in zip(exact, dense, strict=True):
        assert (a.path, b.path) == ("per_sample", "coupled") and (a.layer, a.reading) == (b.layer, b.reading)
        for term in TERMS:
            ta, tb = a.terms[term], b.terms[term]
            scale = max(float(ta.top.eigenvalues.abs().max()), float(ta.bottom.eigenvalues.abs().max()))
            assert _close(ta.bottom.eigenvalues, tb.bottom.eigenvalues, scale, 1e-10), (a.layer, a.reading, term)
            assert _close(ta.top.eigenvalues, tb.top.eigenvalues, scale, 1e-10), (a.layer, a.reading, term)
            assert ta.n_neg == tb.n_neg and ta.n_neg_exact and tb.n_neg_exact, (a.layer, a.reading, term)
            assert bool(ta.bottom.converged.all() and ta.top.converged.all())
        assert b.terms["H_eff"].method == "dense" and a.terms["H_eff"].method == "closed-form"
        torch.testing.assert_close(a.rho_norm, b.rho_norm, rtol=1e-10, atol=0)
        if a.paper is not None and b.paper is not None:
            assert a.paper.minimum == pytest.approx(b.paper.minimum, rel=1e-5)


@pytest.mark.parametrize(
    ("loss", "settings"),
    [("simsiam", {}), ("byol", {}), ("infonce", {"temperature": 0.2}), ("vicreg", {}), ("ntxent", {"temperature": 0.5})],
)
def test_h_eff_is_the_hessian_of_the_training_loss(loss: str, settings: dict) -> None:
    """End to end: the spectrum reported at z equals that of torch.func.hessian of N·ssl_loss w.r.t. z1."""
    proj, pred = _heads("gelu")
    proj, pred = proj.double().requires_grad_(False), pred.double().requires_grad_(False)
    predictor = pred if loss in ("simsiam", "byol") else None
    z1, z2 = (z.double() for z in _z(6))

    def total(z: torch.Tensor) -> torch.Tensor:
        h1, h2 = proj(z), proj(z2)
        outputs = {"h1": h1, "h2": h2, "t1": h1, "t2": h2}
        if predictor is not None:
            outputs.update(p1=predictor(h1), p2=predictor(h2))
        return N * ssl_loss(loss, outputs, **settings)

    exact = torch.linalg.eigvalsh(torch.func.hessian(total)(z1).reshape(N * D, N * D))
    result = head_curvature(proj, predictor, loss, settings, z1, z2, layers=["z"], readings=["ambient"], k=3, dense_threshold=10**6)[0]
    scale = float(exact.abs().max())
    assert _close(result.terms["H_eff"].bottom.eigenvalues, exact[:3], scale, 1e-10)
    assert _close(result.terms["H_eff"].top.eigenvalues, exact.flip(0)[:3], scale, 1e-10)
    assert result.terms["H_eff"].n_neg == int((exact < -1e-10 * scale).sum())


def test_lanczos_path_agrees_with_the_exact_per_sample_spectrum() -> None:
    proj, pred = _heads("gelu")
    z1, z2 = _z(1)
    exact = head_curvature(proj, pred, "simsiam", {}, z1, z2, readings=["ambient"], k=2, path="per_sample")
    lanczos = head_curvature(proj, pred, "simsiam", {}, z1, z2, readings=["ambient"], k=2, path="coupled", dense_threshold=0, tol=1e-10)
    for a, b in zip(exact, lanczos, strict=True):
        for term in ("H_eff", "G"):
            ta, tb = a.terms[term], b.terms[term]
            assert tb.method == "lanczos" and tb.bottom.n_products > 0 and bool(tb.bottom.converged.all())
            scale = float(ta.top.eigenvalues.abs().max())
            assert _close(ta.bottom.eigenvalues[:1], tb.bottom.eigenvalues[:1], scale, 1e-8)
            assert _close(ta.top.eigenvalues[:1], tb.top.eigenvalues[:1], scale, 1e-8)


def test_cosine_readings() -> None:
    proj, pred = _heads("swish")
    z1, z2 = _z(2)
    results = {(r.reading, r.layer): r for r in head_curvature(proj, pred, "simsiam", {}, z1, z2, k=2)}
    assert {reading for reading, _ in results} == {"ambient", "tangential", "mse"}
    ambient, mse = results[("ambient", "z")], results[("mse", "z")]
    # The ambient cosine loss Hessian is indefinite whenever prediction and target are not aligned (PAPER §8.1) ...
    assert float(ambient.terms["H_L"].bottom.eigenvalues[0]) < 0
    # ... so G is indefinite too, whereas under the MSE premise H_L = I and G = JᵀJ ⪰ 0.
    assert ambient.terms["G"].n_neg > 0 and mse.terms["G"].n_neg == 0
    assert mse.terms["H_L"].bottom.eigenvalues.tolist() == [1.0, 1.0]
    # Smooth head: the negative curvature of H_eff under the MSE premise comes from M.
    assert mse.terms["M"].n_neg > 0 and mse.m_ratio > 1e-3
    # Tangential reading: M is the same, G changes.
    tangential = results[("tangential", "z")]
    torch.testing.assert_close(tangential.terms["M"].bottom.eigenvalues, ambient.terms["M"].bottom.eigenvalues)


@pytest.mark.parametrize("act", ["linear", "relu"])
def test_interaction_term_vanishes_for_linear_and_relu_heads(act: str) -> None:
    proj, pred = _heads(act, seed=3)
    z1, z2 = _z(3)
    for result in head_curvature(proj, pred, "simsiam", {}, z1, z2, k=2):
        assert result.m_ratio <= 1e-12 and result.terms["M"].n_neg == 0
        torch.testing.assert_close(result.terms["H_eff"].bottom.eigenvalues, result.terms["G"].bottom.eigenvalues)


def test_train_mode_batchnorm_takes_the_coupled_path() -> None:
    proj, pred = _heads("gelu", bn=True)
    proj.train()
    pred.train()
    with torch.no_grad():
        pred(proj(torch.randn(32, D)))
    z1, z2 = _z(4)
    coupled = head_curvature(proj, pred, "simsiam", {}, z1, z2, readings=["ambient"], layers=["z"], k=2, dense_threshold=10**6)
    per_sample = head_curvature(proj, pred, "simsiam", {}, z1, z2, readings=["ambient"], layers=["z"], k=2, batchnorm="eval")
    assert coupled[0].path == "coupled" and per_sample[0].path == "per_sample"
    assert float(coupled[0].terms["H_eff"].bottom.eigenvalues[0]) != pytest.approx(
        float(per_sample[0].terms["H_eff"].bottom.eigenvalues[0]), rel=1e-6
    )
    with pytest.raises(ValueError, match="path 'per_sample' does not apply: train-mode BatchNorm couples the samples"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2, path="per_sample")


def test_coupled_losses_with_lanczos() -> None:
    proj, _ = _heads("swish")
    z1, z2 = _z(5)
    for loss, settings in (("vicreg", {}), ("ntxent", {"temperature": 0.5}), ("barlow", {"lambd": 0.01})):
        lanczos = head_curvature(proj, None, loss, settings, z1, z2, k=2, dense_threshold=0, tol=1e-10)
        dense = head_curvature(proj, None, loss, settings, z1, z2, k=2, dense_threshold=10**6)
        for a, b in zip(lanczos, dense, strict=True):
            assert a.path == "coupled" and a.terms["G"].method == "lanczos" and a.terms["M"].method == "closed-form"
            for term in ("H_eff", "G"):
                scale = float(b.terms[term].top.eigenvalues.abs().max())
                assert _close(a.terms[term].bottom.eigenvalues[:1], b.terms[term].bottom.eigenvalues[:1], scale, 1e-8), (loss, term)
                assert _close(a.terms[term].top.eigenvalues[:1], b.terms[term].top.eigenvalues[:1], scale, 1e-8), (loss, term)


def test_bad_input_fails_before_any_work() -> None:
    proj, pred = _heads()
    z1, z2 = _z()
    with pytest.raises(ValueError, match="loss must be one of"):
        head_curvature(proj, pred, "moco", {}, z1, z2)
    with pytest.raises(ValueError, match="loss 'simsiam' needs a predictor"):
        head_curvature(proj, None, "simsiam", {}, z1, z2)
    with pytest.raises(ValueError, match="loss 'vicreg' has no predictor"):
        head_curvature(proj, pred, "vicreg", {}, z1, z2)
    with pytest.raises(ValueError, match="z1 has width 3 but the projector takes 5"):
        head_curvature(proj, pred, "simsiam", {}, z1[:, :3], z2)
    with pytest.raises(ValueError, match="must match"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2[:3])
    with pytest.raises(ValueError, match="z2 has non-finite values"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2 * math.nan)
    with pytest.raises(ValueError, match="layers must be distinct names from"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2, layers=["block7"])
    with pytest.raises(ValueError, match="readings for loss 'vicreg' must be distinct values from"):
        head_curvature(proj, None, "vicreg", {}, z1, z2, readings=["mse"])
    with pytest.raises(ValueError, match="path 'per_sample' does not apply: loss 'vicreg'"):
        head_curvature(proj, None, "vicreg", {}, z1, z2, path="per_sample")
    with pytest.raises(ValueError, match="unknown setting"):
        head_curvature(proj, None, "vicreg", {"temperature": 0.1}, z1, z2)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2, k=0)
    with pytest.raises(ValueError, match="floor must be a finite number >= 0"):
        head_curvature(proj, pred, "simsiam", {}, z1, z2, floor=-1.0)


@pytest.fixture(scope="module")
def tiny_runs(tiny_params: dict, digits_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("curvature_runs")
    out = {}
    for run in ("simsiam-swish-d2-bn0-collapsed-lr0.05-s0", "vicreg-relu-d2-bn0-collapsed-lr0.05-s0"):
        paths = RunPaths.under(root / run, root / "resume" / run)
        pretrain(run_config(tiny_params, run), digits_npz, paths, threads=1)
        out[run] = root / run
    return out


def test_curvature_of_a_real_tiny_run(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    files = []
    for run, path in tiny_runs.items():
        ds = curvature_of_run(path, samples=8, coupled_samples=6, k=2)
        check_attrs(ds)
        assert {"step", "reading", "layer", "term", "end", "eig_index", "sample"} <= set(ds.dims)
        assert list(ds["step"].values) == [0, 4, 8, 24]
        assert list(ds["layer"].values) == (["z", "block1"] if run.startswith("simsiam") else ["z"])  # coupled: z only by default
        assert list(ds["term"].values) == list(TERMS)
        assert ds["eigenvalue"].dims == ("step", "reading", "layer", "term", "end", "eig_index")
        assert bool(ds["eigenvalue"].notnull().all()) and int(ds["converged"].sum()) == ds["converged"].size
        assert json.loads(ds.attrs["run_json"])["loss"] == run.split("-")[0]
        assert json.loads(ds.attrs["config_json"])["run"]["id"] == run
        assert {"Conventions", "source", "history", "references", "curvature_json", "batch_scale"} <= set(ds.attrs)
        assert bool(ds["paper_lambda_min"].sel(layer="z").notnull().all())
        if run.startswith("simsiam"):
            assert list(ds["reading"].values) == ["ambient", "tangential", "mse"] and ds.sizes["sample"] == 8
            assert set(ds["method"].values.ravel()) == {"closed-form"}
            assert float(ds["sample_lambda_min"].sel(term="H_eff").min()) == pytest.approx(
                float(ds["eigenvalue"].sel(term="H_eff", end="bottom", eig_index=0).min())
            )
        else:
            assert list(ds["reading"].values) == ["ambient"] and ds.sizes["sample"] == 6
            assert float(abs(ds["m_spectral_ratio"]).max()) <= 1e-12  # ReLU head: M = 0
        file = tmp_path / f"{run}.nc"
        write_netcdf(ds, file)
        files.append(file)
    cube = combine(files, "curvature", "{}")
    assert cube.sizes["config"] == 2 and set(cube["loss"].values) == {"simsiam", "vicreg"}
    assert bool(cube["eigenvalue"].sel(layer="block1", config=cube["loss"] == "vicreg").isnull().all())
    swish = cube["eigenvalue"].where(cube["activation"] == "swish", drop=True)
    assert swish.sizes["config"] == 1
    with xr.open_dataset(files[0]) as back:
        assert back["converged"].dtype.kind in "iu"
