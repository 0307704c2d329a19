"""Curvature benchmark (issue 3, part 4): geomhead's solvers beside the paper's estimator and the field's tools.

Every solver works on the same function of the backbone representations, f(Z1) = n·L(Z1) (view 2 fixed), and
is scored against a dense ground truth: λ_min and λ_max of H_eff = ∇²f, their relative errors |λ̂ − λ|/|λ|,
the number of Hessian-vector products and the wall time. For each iterative solver the cheapest setting of a
short ladder (tolerance or Krylov dimension) that reaches 1e-6 on both ends is reported (or the most accurate
one when none does). Cases:

* ``--scale default``: real tracked states of the default pipeline (a SimSiam and a VICReg run of params.yaml,
  trained here, final snapshot), plus the cost of tracking one run against its pretraining time;
* ``--scale paper``: a synthetic SimSiam state of the paper's size (z ∈ R^512, 2048-wide heads, batch 256),
  plus closed-form 512×512 G/M blocks against a per-sample ``torch.func.hessian``.

Peers are optional (benchmark only, not geomhead dependencies): ``pip install pyhessian==0.1
hessian-eigenthings==1.0.0a5``; a missing peer is skipped with a note. Usage::

    python benchmarks/curvature.py [--scale default|paper] [--quick] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse.linalg
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from geomhead.atomic import torch_load  # noqa: E402
from geomhead.curvature import curvature_of_run, heads_from_config  # noqa: E402
from geomhead.heads import ProjectionHead  # noqa: E402
from geomhead.hessian import affine_chain, cosine_derivatives, effective_hessian_blocks, interaction_blocks, linearise, output_jacobian  # noqa: E402
from geomhead.lanczos import lanczos_extremes, paper_power_iteration  # noqa: E402
from geomhead.losses import negative_cosine, vicreg_loss  # noqa: E402
from geomhead.operators import CurvatureOperator, FactoredOperator, head_function, vicreg_hessian_product  # noqa: E402

warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
TARGET = 1e-6


@dataclass
class Row:
    """One solver's best run on one case."""

    case: str
    method: str
    setting: str
    lam_min: float
    lam_max: float
    err_min: float
    err_max: float
    products: int
    wall_s: float
    reaches: bool
    note: str = ""


@dataclass
class Case:
    """A state: the function of Z1 and its autograd operator (shared by all matrix-free solvers), geomhead's own
    route (exact closed form for per-sample losses, the factored operator for coupled ones) and the truth."""

    name: str
    size: int
    auto: Callable[[], CurvatureOperator]
    auto32: Callable[[], CurvatureOperator]
    lam_min: float
    lam_max: float
    truth_note: str
    z1: Tensor
    function: Callable[[Tensor], Tensor]
    closed_form: Callable[[], tuple[float, float]] | None = None
    factored: Callable[[], FactoredOperator] | None = None


def _err(estimate: float, exact: float) -> float:
    return abs(estimate - exact) / abs(exact) if exact != 0 else abs(estimate)


def _row(case: Case, method: str, setting: str, lam_min: float, lam_max: float, products: int, wall: float, note: str = "") -> Row:
    e_min = _err(lam_min, case.lam_min) if not math.isnan(lam_min) else math.nan
    e_max = _err(lam_max, case.lam_max) if not math.isnan(lam_max) else math.nan
    errs = [e for e in (e_min, e_max) if not math.isnan(e)]
    return Row(case.name, method, setting, lam_min, lam_max, e_min, e_max, products, wall, bool(errs) and max(errs) <= TARGET, note)


def _ladder(rows: Iterator[Row]) -> Row:
    """The first row that reaches the target, else the most accurate one."""
    best: Row | None = None
    for row in rows:
        if row.reaches:
            return row
        worst = max(e for e in (row.err_min, row.err_max) if not math.isnan(e))
        if best is None or worst < max(e for e in (best.err_min, best.err_max) if not math.isnan(e)):
            best = row
    assert best is not None
    return best


# ----- solvers ----------------------------------------------------------------------------------------------
def ours_lanczos(case: Case, tols: Sequence[float], label: str, make: Callable[[], CurvatureOperator | FactoredOperator]) -> Row:
    def runs() -> Iterator[Row]:
        for tol in tols:
            op = make()
            start = time.perf_counter()
            res = lanczos_extremes(op.matvec_fn("H_eff"), op.size, k=1, tol=tol, max_iter=2000, seed=0, matmat=op.matmat_fn("H_eff"))
            wall = time.perf_counter() - start
            lo, hi = float(res.bottom.eigenvalues[0]), float(res.top.eigenvalues[0])
            yield _row(
                case, label, f"tol={tol:g}", lo, hi, res.bottom.n_products, wall, "converged" if res.all_converged else "not converged"
            )

    return _ladder(runs())


class _ProductCap(RuntimeError):
    """Raised by a capped operator once its product budget is spent."""


def scipy_eigsh(case: Case, tols: Sequence[float], cap: int) -> Row:
    def runs() -> Iterator[Row]:
        for tol in tols:
            op = case.auto()
            plain = op.matvec_fn("H_eff")

            def mv(v: Tensor, plain: Callable[[Tensor], Tensor] = plain, op: CurvatureOperator = op) -> Tensor:
                if op.counts["H_eff"] >= cap:
                    raise _ProductCap
                return plain(v)

            lin = scipy.sparse.linalg.LinearOperator(
                (op.size, op.size),
                matvec=lambda v, mv=mv: mv(torch.from_numpy(np.ascontiguousarray(v).reshape(-1))).numpy(),
                dtype=np.float64,
            )
            v0 = np.random.default_rng(0).standard_normal(op.size)
            start = time.perf_counter()
            try:
                vals = scipy.sparse.linalg.eigsh(lin, k=2, which="BE", tol=tol, v0=v0, return_eigenvectors=False)
            except _ProductCap:
                yield _row(
                    case,
                    "scipy eigsh (ARPACK)",
                    f"tol={tol:g}",
                    math.inf,
                    math.inf,
                    cap,
                    time.perf_counter() - start,
                    f"stopped at the {cap}-product cap",
                )
                return
            wall = time.perf_counter() - start
            yield _row(case, "scipy eigsh (ARPACK)", f"tol={tol:g}", float(vals.min()), float(vals.max()), op.counts["H_eff"], wall)

    return _ladder(runs())


def paper_estimator(case: Case) -> Row:
    op = case.auto32()
    start = time.perf_counter()
    est = paper_power_iteration(op.matvec_fn("H_eff"), op.size, seed=0)
    wall = time.perf_counter() - start
    # The paper reads its second value as λ_min; its first is the dominant-magnitude eigenvalue, not λ_max.
    return _row(
        case, "paper 20-step power (float32)", "20+20 steps", est.minimum, math.nan, est.n_products, wall, f"dominant={est.dominant:.4g}"
    )


def eigenthings_lanczos(case: Case, dims: Sequence[int]) -> Row | str:
    try:
        import hessian_eigenthings as he
    except ImportError:
        return "hessian-eigenthings not installed (pip install hessian-eigenthings==1.0.0a5): skipped"

    def runs() -> Iterator[Row]:
        for m in dims:
            if m > case.size:
                return
            op = case.auto()
            lam = he.LambdaOperator(op.matvec_fn("H_eff"), op.size, dtype=torch.float64)
            start = time.perf_counter()
            res = he.lanczos(lam, k=m, max_iter=m, which="SA", seed=0)  # all Ritz values of one Krylov space
            wall = time.perf_counter() - start
            vals = res.eigenvalues
            yield _row(
                case,
                "hessian-eigenthings lanczos",
                f"max_iter={m}",
                float(vals.min()),
                float(vals.max()),
                op.counts["H_eff"],
                wall,
                "reorth" if m <= 50 else "no reorth (its default)",
            )

    return _ladder(runs())


def pyhessian_power(case: Case, tols: Sequence[float], max_iter: int) -> Row | str:
    try:
        import pyhessian
    except ImportError:
        return "PyHessian not installed (pip install pyhessian==0.1): skipped"
    ph = sys.modules["pyhessian.hessian"]  # the module (the package re-exports a class of the same name)

    class ZModel(nn.Module):
        def __init__(self, z: Tensor) -> None:
            super().__init__()
            self.z = nn.Parameter(z.clone())

        def forward(self, _inputs: Tensor) -> Tensor:
            return self.z

    original = ph.hessian_vector_product
    counter = {"n": 0}

    def counted(*args: object, **kwargs: object) -> object:
        counter["n"] += 1
        return original(*args, **kwargs)

    def runs() -> Iterator[Row]:
        for tol in tols:
            counter["n"] = 0
            model = ZModel(case.z1)
            dummy = torch.zeros(1, dtype=torch.float64)
            old_dtype = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)  # its random vectors use the default dtype
            ph.hessian_vector_product = counted
            try:
                start = time.perf_counter()
                engine = pyhessian.hessian(model, lambda out, _t: case.function(out), data=(dummy, dummy), cuda=False)
                values, _ = engine.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
                wall = time.perf_counter() - start
            finally:
                ph.hessian_vector_product = original
                torch.set_default_dtype(old_dtype)
            dominant = float(values[0])
            lo, hi = (dominant, math.nan) if dominant < 0 else (math.nan, dominant)
            yield _row(
                case,
                "PyHessian power iteration",
                f"tol={tol:g}, maxIter={max_iter}",
                lo,
                hi,
                counter["n"],
                wall,
                "dominant-magnitude eigenvalue only",
            )

    return _ladder(runs())


def backend_timing(case: Case, reps: int) -> dict[str, float]:
    """Median seconds per H_eff product for both autograd backends (one product at a time)."""
    out = {}
    for backend in ("reverse", "forward"):
        op = case.auto() if backend == "reverse" else _with_backend(case, backend)
        v = torch.randn(op.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        op.matvec("H_eff", v)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            op.matvec("H_eff", v)
            times.append(time.perf_counter() - start)
        out[backend] = float(np.median(times))
    return out


_BACKEND_FACTORIES: dict[str, Callable[[str], CurvatureOperator]] = {}


def _with_backend(case: Case, backend: str) -> CurvatureOperator:
    return _BACKEND_FACTORIES[case.name](backend)


# ----- cases ------------------------------------------------------------------------------------------------
def simsiam_case(name: str, projector: ProjectionHead, predictor: ProjectionHead, z1: Tensor, z2: Tensor) -> Case:
    projector, predictor = projector.double().eval().requires_grad_(False), predictor.double().eval().requires_grad_(False)
    z1, z2 = z1.double(), z2.double()
    with torch.no_grad():
        c2 = projector(z2)

    def operator(dtype: torch.dtype, backend: str = "reverse") -> CurvatureOperator:
        head = head_function((projector, predictor), 0, batchnorm="eval", dtype=dtype)
        target = c2.to(dtype)
        return CurvatureOperator(head, lambda p: 0.5 * negative_cosine(p, target).sum(), z1.to(dtype), backend=backend)  # type: ignore[arg-type]

    _BACKEND_FACTORIES[name] = lambda backend: operator(torch.float64, backend)
    chain = affine_chain((projector, predictor), 0)

    def closed_form() -> tuple[float, float]:
        blocks = effective_hessian_blocks(chain, z1, lambda h: cosine_derivatives(h, c2, 0.5), chunk=16)
        eig = torch.linalg.eigvalsh(blocks.H_eff)
        return float(eig.min()), float(eig.max())

    start = time.perf_counter()
    lo, hi = closed_form()
    truth_time = time.perf_counter() - start

    def function(z: Tensor) -> Tensor:
        return 0.5 * negative_cosine(predictor(projector(z)), c2).sum()

    truth = f"union of the per-sample closed-form blocks' eigvalsh ({truth_time:.1f} s)"
    return Case(
        name,
        z1.numel(),
        lambda: operator(torch.float64),
        lambda: operator(torch.float32),
        lo,
        hi,
        truth,
        z1,
        function,
        closed_form=closed_form,
    )


def vicreg_case(name: str, projector: ProjectionHead, z1: Tensor, z2: Tensor) -> Case:
    projector = projector.double().eval().requires_grad_(False)
    z1, z2 = z1.double(), z2.double()
    n = z1.shape[0]
    with torch.no_grad():
        h2 = projector(z2)

    def loss(h: Tensor) -> Tensor:
        return n * vicreg_loss(h, h2)

    def operator(dtype: torch.dtype, backend: str = "reverse") -> CurvatureOperator:
        head = head_function((projector,), 0, batchnorm="eval", dtype=dtype)
        target = h2.to(dtype)
        return CurvatureOperator(head, lambda h: n * vicreg_loss(h, target), z1.to(dtype), backend=backend)  # type: ignore[arg-type]

    _BACKEND_FACTORIES[name] = lambda backend: operator(torch.float64, backend)
    chain = affine_chain((projector,), 0)

    def factored() -> FactoredOperator:
        lin = linearise(chain, z1)
        hd = lin.head_out.clone().requires_grad_(True)
        (rho,) = torch.autograd.grad(loss(hd), hd)
        return FactoredOperator(
            output_jacobian(chain, lin),
            interaction_blocks(chain, lin, rho),
            loss,
            lin.head_out,
            loss_hessian=vicreg_hessian_product(lin.head_out),
        )

    start = time.perf_counter()
    dense = factored().dense("H_eff")
    eig = torch.linalg.eigvalsh(dense)
    truth_time = time.perf_counter() - start

    def function(z: Tensor) -> Tensor:
        return loss(projector(z))

    truth = f"eigvalsh of the dense {z1.numel()}x{z1.numel()} operator ({truth_time:.1f} s)"
    return Case(
        name,
        z1.numel(),
        lambda: operator(torch.float64),
        lambda: operator(torch.float32),
        float(eig.min()),
        float(eig.max()),
        truth,
        z1,
        function,
        factored=factored,
    )


# ----- the default pipeline's real states ------------------------------------------------------------------
DEFAULT_RUNS = ("simsiam-swish-d2-bn0-collapsed-lr0.05-s0", "vicreg-swish-d2-bn0-collapsed-lr0.05-s0")


def train_default_runs(folder: Path, quick: bool) -> dict[str, tuple[Path, float]]:
    """Train the two default runs of params.yaml (1 thread, as a pipeline job); returns dir and training time."""
    from geomhead.config import load_params, run_config
    from geomhead.data import prepare_digits, save_dataset
    from geomhead.train import RunPaths, pretrain

    params = load_params(ROOT / "params.yaml")
    if quick:
        params["train"]["steps"] = 100
    data = folder / "digits.npz"
    save_dataset(prepare_digits(params["data"]["test_fraction"], params["data"]["split_seed"]), data)
    out = {}
    for run in DEFAULT_RUNS:
        config = run_config(params, run)
        paths = RunPaths.under(folder / run, folder / "resume" / run)
        with _threads(1):
            start = time.process_time()
            pretrain(config, data, paths, threads=1, log=open(folder / f"{run}.log", "w"))  # noqa: SIM115
            out[run] = (folder / run, time.process_time() - start)
    return out


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def default_cases(runs: dict[str, tuple[Path, float]], rows: int) -> list[Case]:
    cases = []
    for run, (path, _) in runs.items():
        config = json.loads(torch_load(path / "model.pt")["config_json"])
        projector, predictor = heads_from_config(config)
        snap = torch_load(sorted((path / "snapshots").glob("step_*.pt"))[-1])
        projector.load_state_dict(snap["projector"])
        z1, z2 = snap["z1"][:rows], snap["z2"][:rows]
        label = f"{run.split('-')[0]} default run, step {snap['step']}, n={rows}, N={z1.numel()}"
        if predictor is not None:
            predictor.load_state_dict(snap["predictor"])
            cases.append(simsiam_case(label, projector, predictor, z1, z2))
        else:
            cases.append(vicreg_case(label, projector, z1, z2))
    return cases


def tracking_cost(runs: dict[str, tuple[Path, float]]) -> list[dict[str, object]]:
    """CPU seconds of curvature_of_run with its defaults (1 thread) against the run's pretraining."""
    out = []
    for run, (path, train_s) in runs.items():
        with _threads(1):
            start = time.process_time()
            ds = curvature_of_run(path)
            cost = time.process_time() - start
        out.append(
            {"run": run, "snapshots": int(ds.sizes["step"]), "pretrain_cpu_s": train_s, "curvature_cpu_s": cost, "ratio": cost / train_s}
        )
    return out


# ----- the paper's scale -----------------------------------------------------------------------------------
def paper_case(batch: int) -> tuple[Case, ProjectionHead, ProjectionHead, Tensor, Tensor]:
    torch.manual_seed(0)
    projector = ProjectionHead(512, 2048, 2048, 2, "swish")
    predictor = ProjectionHead(2048, 512, 2048, 2, "swish")
    gen = torch.Generator().manual_seed(1)
    z1 = torch.relu(torch.randn(batch, 512, generator=gen))  # post-ReLU, average-pooled-like features
    z2 = torch.relu(z1 + 0.3 * torch.randn(batch, 512, generator=gen))
    case = simsiam_case(f"synthetic SimSiam, paper size (z 512, heads 2048), n={batch}, N={z1.numel()}", projector, predictor, z1, z2)
    return case, projector, predictor, z1, z2


def per_sample_blocks_timing(
    projector: ProjectionHead, predictor: ProjectionHead, z1: Tensor, z2: Tensor, samples: int
) -> dict[str, float]:
    """Seconds per sample: closed-form H_eff/G/M blocks vs torch.func.hessian (H_eff only) of one sample."""
    projector, predictor = projector.double().eval().requires_grad_(False), predictor.double().eval().requires_grad_(False)
    z1, z2 = z1.double()[:samples], z2.double()[:samples]
    with torch.no_grad():
        c2 = projector(z2)
    chain = affine_chain((projector, predictor), 0)
    effective_hessian_blocks(chain, z1[:2], lambda h: cosine_derivatives(h, c2[:2], 0.5))
    start = time.perf_counter()
    blocks = effective_hessian_blocks(chain, z1, lambda h: cosine_derivatives(h, c2, 0.5), chunk=16)
    closed = (time.perf_counter() - start) / samples
    f = torch.func.hessian(lambda z, c: 0.5 * negative_cosine(predictor(projector(z[None])), c[None]).sum())
    f(z1[0], c2[0])
    start = time.perf_counter()
    reference = [f(z1[i], c2[i]) for i in range(min(samples, 4))]
    func = (time.perf_counter() - start) / len(reference)
    err = max(float((blocks.H_eff[i] - r).abs().max() / r.abs().max()) for i, r in enumerate(reference))
    return {
        "closed_form_s_per_sample": closed,
        "torch_func_hessian_s_per_sample": func,
        "speedup": func / closed,
        "max_rel_diff": err,
        "samples": samples,
    }


# ----- driver -----------------------------------------------------------------------------------------------
def run_case(case: Case, quick: bool, paper_scale: bool) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    if case.factored is not None:
        rows.append(ours_lanczos(case, (1e-4, 1e-5, 1e-6, 1e-8), "geomhead Lanczos (factored operator)", case.factored))
    elif case.closed_form is not None:
        start = time.perf_counter()
        lo, hi = case.closed_form()
        rows.append(_row(case, "geomhead closed form (exact blocks)", "exact", lo, hi, 0, time.perf_counter() - start))
    tols = (1e-4, 1e-6, 1e-8) if paper_scale else (1e-4, 1e-5, 1e-6, 1e-8)
    rows.append(ours_lanczos(case, tols, "geomhead Lanczos (autograd HVP)", case.auto))
    rows.append(scipy_eigsh(case, (1e-4, 1e-6, 1e-8) if paper_scale else (1e-3, 1e-4, 1e-6, 1e-8, 1e-10), 1500 if paper_scale else 20000))
    dims = (40, 80, 160, 320) if paper_scale else (20, 40, 60, 80, 120, 160, 240, 320, 480, 640)
    for peer in (
        eigenthings_lanczos(case, dims),
        pyhessian_power(case, (1e-3, 1e-6, 1e-9) if not paper_scale else (1e-3, 1e-6), 150 if paper_scale else 1000),
    ):
        if isinstance(peer, str):
            notes.append(peer)
        else:
            rows.append(peer)
    rows.append(paper_estimator(case))
    return rows, notes


def print_table(case: Case, rows: Sequence[Row]) -> None:
    print(f"\n### {case.name}\nground truth: lambda_min = {case.lam_min:.10g}, lambda_max = {case.lam_max:.10g} ({case.truth_note})\n")
    print("| method | setting | lambda_min rel. err | lambda_max rel. err | products | wall s | <= 1e-6 | note |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        fmt = lambda e: "n/a" if math.isnan(e) else f"{e:.1e}"  # noqa: E731
        print(
            f"| {r.method} | {r.setting} | {fmt(r.err_min)} | {fmt(r.err_max)} | {r.products} | {r.wall_s:.3g} | {'yes' if r.reaches else 'no'} | {r.note} |"
        )
    ours = rows[0]
    print()
    for r in rows[1:]:
        if r.reaches and r.products:
            print(
                f"ratio {r.method} / {ours.method}: products {r.products / max(ours.products, 1):.2f}x, time {r.wall_s / max(ours.wall_s, 1e-9):.2f}x"
            )
        elif not r.reaches:
            print(f"{r.method} does not reach 1e-6 on both ends within the settings tried")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("default", "paper"), default="default")
    parser.add_argument("--quick", action="store_true", help="smaller states and ladders (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write all measurements as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {"scale": args.scale, "quick": args.quick, "threads": args.threads, "torch": torch.__version__}
    all_rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="geomhead-bench-"))
    try:
        if args.scale == "default":
            runs = train_default_runs(tmp, args.quick)
            cases = default_cases(runs, 16 if args.quick else 64)
        else:
            case, projector, predictor, z1, z2 = paper_case(32 if args.quick else 256)
            cases = [case]
        for case in cases:
            rows, notes = run_case(case, args.quick, args.scale == "paper")
            print_table(case, rows)
            for note in notes:
                print(f"note: {note}")
            timing = backend_timing(case, 3 if args.scale == "paper" else 20)
            faster = min(timing, key=timing.get)  # type: ignore[arg-type]
            print(
                f"H_eff product (autograd through the head): reverse {timing['reverse'] * 1e3:.2f} ms, forward-over-reverse {timing['forward'] * 1e3:.2f} ms -> {faster} is faster"
            )
            report.setdefault("backend_timing", {})[case.name] = timing  # type: ignore[index]
            all_rows.extend(rows)
        if args.scale == "paper":
            blocks = per_sample_blocks_timing(projector, predictor, z1, z2, 16 if args.quick else 64)
            print(
                f"\nper-sample 512x512 blocks: closed form (H_eff, G, M) {blocks['closed_form_s_per_sample'] * 1e3:.1f} ms/sample, torch.func.hessian (H_eff only) {blocks['torch_func_hessian_s_per_sample'] * 1e3:.1f} ms/sample -> {blocks['speedup']:.1f}x (max rel. diff {blocks['max_rel_diff']:.1e})"
            )
            report["per_sample_blocks"] = blocks
        else:
            cost = tracking_cost(runs)
            print("\n| run | snapshots | pretraining CPU s | curvature tracking CPU s | ratio |\n| --- | --- | --- | --- | --- |")
            for c in cost:
                print(f"| {c['run']} | {c['snapshots']} | {c['pretrain_cpu_s']:.2f} | {c['curvature_cpu_s']:.2f} | {c['ratio']:.2f} |")
            report["tracking_cost"] = cost
        report["rows"] = [asdict(r) for r in all_rows]
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
