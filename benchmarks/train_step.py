"""Training-step time: geomhead's loop against a bare PyTorch loop (same model, batch, loss).

Both loops draw two augmented views, run the model, the loss, backward and the SGD step. geomhead
adds derived per-step generators, the NaN guard, EMA, and — at logged steps only — the dynamics
metrics (feature spectra from the spectrum set), snapshots and checkpoints. Printed: the median
time of plain steps, and the amortised time per step of a whole run with the default schedule.

    .venv/bin/python benchmarks/train_step.py [--params params.yaml] [--run RUN_ID] [--steps 300]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from geomhead import augment
from geomhead.config import expand_runs, load_params, run_config
from geomhead.data import load_dataset, prepare_digits, save_dataset
from geomhead.losses import ssl_loss
from geomhead.model import build_model
from geomhead.train import RunPaths, Trainer


def bare_loop(config: dict, x_train: torch.Tensor, steps: int, image_shape: tuple[int, int, int]) -> list[float]:
    """The loop a researcher would write by hand; returns per-step seconds."""
    torch.manual_seed(config["run"]["seed"])
    model = build_model(config, image_shape).train()
    opt = torch.optim.SGD(model.parameters(), lr=config["run"]["lr"], momentum=config["train"]["momentum"])
    cfg = augment.AugmentConfig.from_dict(config["augment"])
    gen = torch.Generator().manual_seed(0)
    batch = config["train"]["batch_size"]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(len(x_train), (batch,), generator=gen)
        x1, x2 = augment.two_views(x_train[idx], cfg, gen)
        loss = ssl_loss(config["run"]["loss"], model(x1, x2), **config["loss_settings"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def geomhead_steps(trainer: Trainer, steps: int) -> list[float]:
    """geomhead's train_step at plain (non-logged) steps; returns per-step seconds."""
    plain = [s for s in range(trainer.steps) if s not in trainer.logged][:steps]
    times = []
    for step in plain:
        t0 = time.perf_counter()
        trainer.train_step(step)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", default=None, help="run id (default: the first SimSiam swish run)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    run_id = args.run or next(r.id for r in expand_runs(params) if r.loss == "simsiam" and r.activation == "swish")
    config = run_config(params, run_id)
    config["train"]["steps"] = args.steps
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits.npz"
        save_dataset(prepare_digits(config["data"]["test_fraction"], config["data"]["split_seed"]), data)
        dataset = load_dataset(data)
        x_train = torch.as_tensor(dataset.x_train)
        # warm-up, then alternate blocks so that both loops see the same machine state
        bare_loop(config, x_train, 10, dataset.image_shape)
        bare, ours = [], []
        trainer = Trainer(config, dataset, RunPaths.under(Path(tmp) / "a", Path(tmp) / "ra"), threads=args.threads, log=io.StringIO())
        for _ in range(3):
            bare += bare_loop(config, x_train, args.steps // 6, dataset.image_shape)
            ours += geomhead_steps(trainer, args.steps // 6)
        # amortised over a whole run with the default schedule (logging, snapshots, checkpoints)
        whole_run = Trainer(config, dataset, RunPaths.under(Path(tmp) / "b", Path(tmp) / "rb"), threads=args.threads, log=io.StringIO())
        t0 = time.perf_counter()
        whole_run.run()
        whole = (time.perf_counter() - t0) / args.steps
        bare_whole = sum(bare_loop(config, x_train, args.steps, dataset.image_shape)) / args.steps
    med_b, med_o = statistics.median(bare), statistics.median(ours)
    print(f"run {run_id}, batch {config['train']['batch_size']}, {args.threads} thread(s), {args.steps} steps")
    print(f"{'':34s}{'bare PyTorch':>14s}{'geomhead':>12s}{'ratio':>8s}")
    print(f"{'median plain step (ms)':34s}{1e3 * med_b:14.2f}{1e3 * med_o:12.2f}{med_o / med_b:8.3f}")
    print(f"{'whole run incl. logging (ms/step)':34s}{1e3 * bare_whole:14.2f}{1e3 * whole:12.2f}{whole / bare_whole:8.3f}")


if __name__ == "__main__":
    main()
