"""profiles/slurm on a real single-node SLURM cluster that the tests start (geomhead.slurm_local).

The tiny configuration runs end to end through the SLURM executor plugin and gives the same cubes,
weights and figures as a local run; only training jobs ask SLURM for a GPU; a training job cancelled by
``scancel`` is retried and resumes bitwise; a run that fails for good is reported and leaves nothing that
looks finished. Skipped where the SLURM programs are missing, unless GEOMHEAD_REQUIRE_SLURM is set (CI).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import slurm_cluster
from geomhead.atomic import torch_load
from geomhead.config import run_config, validate_params
from geomhead.slurm_local import LocalCluster, Submission, gres_conf, local_cluster, parse_scontrol, site_profile, slurm_conf
from geomhead.train import CHECKPOINT, RunPaths, pretrain
from helpers import ROOT, TINY
from slurm_cluster import PROFILE, cluster_or_skip, finish_snakemake, make_profile, start_snakemake

RESUMED = "simsiam-swish-d2-bn0-collapsed-lr0.05-s0"
DIVERGES = "vicreg-linear-d2-bn0-normal-lr10-s0"
SLURM_LIMIT_S = 300
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


# --- without SLURM: configuration text, parsing, the site profile --------------------------------------


def test_slurm_conf_declares_one_node_with_fake_gpus_under_root(tmp_path: Path) -> None:
    text = slurm_conf(tmp_path, host="node1", user="me", ports=(7001, 7002), cpus=2, memory_mb=1000, gpus=2)
    assert "SlurmctldPort=7001\n" in text and "SlurmdPort=7002\n" in text
    assert "NodeName=node1 NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN\n" in text
    assert "PartitionName=debug Nodes=node1 Default=YES" in text
    for line in text.splitlines():
        if re.match(r"(StateSave|SlurmdSpool|Slurmctld\w+File|Slurmd\w+File)", line):
            assert line.split("=", 1)[1].startswith(str(tmp_path)), line
    assert "Gres=" not in slurm_conf(tmp_path, host="n", user="me", ports=(1, 2), cpus=1, memory_mb=1, gpus=0)
    assert gres_conf("node1", 2) == "NodeName=node1 Name=gpu File=/dev/null\nNodeName=node1 Name=gpu File=/dev/zero\n"
    with pytest.raises(ValueError, match="gpus=9 is not allowed; must be between 0 and 5"):
        gres_conf("node1", 9)
    with pytest.raises(ValueError, match="cpus=0 is not allowed; must be >= 1"):
        slurm_conf(tmp_path, host="n", user="me", ports=(1, 2), cpus=0, memory_mb=1, gpus=0)
    with pytest.raises(ValueError, match="gpus=-1 is not allowed; must be >= 0"):
        slurm_conf(tmp_path, host="n", user="me", ports=(1, 2), cpus=1, memory_mb=1, gpus=-1)


def test_scontrol_parsing_and_gpu_count() -> None:
    job = parse_scontrol("JobId=7 JobName=x Comment=rule_pretrain_wildcards_a b  TresPerJob=gres:gpu:1 WorkDir=/w\n")
    assert job == {"JobId": "7", "JobName": "x", "Comment": "rule_pretrain_wildcards_a b", "TresPerJob": "gres:gpu:1", "WorkDir": "/w"}
    assert Submission("7", (), job).gpus == 1 and Submission("7", (), job).comment == "rule_pretrain_wildcards_a b"
    assert Submission("8", (), {"TresPerNode": "gres:gpu:a100:2"}).gpus == 2
    assert Submission("9", (), {"TRES": "cpu=1,mem=500M,node=1"}).gpus == 0


def test_site_profile_changes_only_site_values(tmp_path: Path) -> None:
    shipped = yaml.safe_load((PROFILE / "config.yaml").read_text())
    local = yaml.safe_load((site_profile(PROFILE, tmp_path / "p", partition="part", mem_mb=700, threads=1) / "config.yaml").read_text())
    assert local["default-resources"] == {**shipped["default-resources"], "slurm_partition": "part", "mem_mb": 700}
    assert local["set-resources"]["pretrain"] == {**shipped["set-resources"]["pretrain"], "mem_mb": 700}
    assert local["set-resources"]["pretrain"]["gpu"] == 1
    assert local["set-threads"] == dict.fromkeys(shipped["set-threads"], 1)
    rest = ("default-resources", "set-resources", "set-threads")
    assert {k: v for k, v in local.items() if k not in rest} == {k: v for k, v in shipped.items() if k not in rest}
    assert shipped["executor"] == "slurm" and shipped["retries"] >= 1 and shipped["slurm-status-command"] == "squeue"
    with pytest.raises(ValueError, match="mem_mb=0 is not allowed"):
        site_profile(PROFILE, tmp_path / "q", mem_mb=0)


def test_missing_slurm_skips_with_the_reason_and_fails_where_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm_cluster, "missing_programs", lambda: ["slurmd"])
    monkeypatch.delenv(slurm_cluster.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"SLURM programs not installed: slurmd \(\.ci/run installs"):
        with cluster_or_skip(tmp_path):
            pass
    monkeypatch.setenv(slurm_cluster.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="GEOMHEAD_REQUIRE_SLURM is set but: SLURM programs not installed: slurmd"):
        with cluster_or_skip(tmp_path):
            pass
    assert not (tmp_path / "slurm.conf").exists()


# --- the cluster itself ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One node with this machine's CPUs and two fake GPUs (two training jobs at once, like --cores 2)."""
    with cluster_or_skip(tmp_path_factory.mktemp("slurm"), gpus=2) as running:
        yield running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_clusters_coexist_and_stop_by_pid(cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", cluster.env()["PATH"])  # started from a shell that uses the first cluster
    with local_cluster(tmp_path / "second", gpus=1) as second:
        assert str(cluster.bin) not in (second.bin / "srun").read_text() + (second.bin / "sbatch").read_text()
        assert second.conf.read_text() != cluster.conf.read_text()  # other ports, other files
        for each in (cluster, second):
            assert each.command("sinfo", "--noheader", "--Node", "--format=%N %t %G").split() == [each.node, "idle", f"gpu:{each.gpus}"]
        job = second.command("sbatch", "--parsable", "--gpus=1", "--wrap", "true", "-o", "/dev/null").strip()
        assert [sub.job_id for sub in second.submissions()] == [job] and second.submissions()[0].gpus == 1
    assert not any(_alive(pid) for pid in second.pids)
    assert all(_alive(pid) for pid in cluster.pids)


def test_script_prints_the_environment_and_stops_on_ctrl_c(cluster: LocalCluster, tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "slurm_local_cluster.py"), "--root", str(tmp_path / "c"), "--profile", str(PROFILE)]
    proc = subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    watchdog = threading.Timer(120, proc.kill)  # reading its output cannot hang
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        export = re.search(r"export SLURM_CONF=(\S+) PATH=(\S+):", text)
        assert export, text
        env = {**os.environ, "SLURM_CONF": export.group(1), "PATH": f"{export.group(2)}:{os.environ['PATH']}"}
        sinfo = subprocess.run(["sinfo", "--noheader", "--format=%t %G"], capture_output=True, text=True, env=env, timeout=30)
        assert sinfo.stdout.split() == ["idle", "gpu:1"], sinfo
        assert f"snakemake --profile {tmp_path / 'c' / 'profile'} --configfile tests/configs/tiny.yaml" in text
        pids = [int(pid) for pid in re.search(r"daemons (\d+) and (\d+)", text).groups()]  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0 and "stopped" in out
    assert not any(_alive(pid) for pid in pids)


# --- the tiny configuration through profiles/slurm --------------------------------------------------------


@dataclass(frozen=True)
class SlurmRun:
    workdir: Path
    result: subprocess.CompletedProcess[str]
    submissions: list[Submission]


def _cube(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as cube:
        return cube.load()


def _assert_same_cube(a: Path, b: Path) -> None:
    """Same values, coordinates and attributes, except what records when and how fast it ran: the
    dataset's `history` (time and script path), `source` (the code's git commit, which others may move
    between two runs) and measured `wall_time` variables."""
    cube_a, cube_b = _cube(a), _cube(b)
    timings = [name for name in cube_a.data_vars if "wall_time" in str(name)]
    assert [name for name in cube_b.data_vars if "wall_time" in str(name)] == timings, b
    xr.testing.assert_identical(cube_a.drop_vars(timings).drop_attrs(deep=False), cube_b.drop_vars(timings).drop_attrs(deep=False))
    provenance = ("history", "source")
    assert {k: v for k, v in cube_a.attrs.items() if k not in provenance} == {k: v for k, v in cube_b.attrs.items() if k not in provenance}


def _assert_same_tensors(a: Path, b: Path) -> None:
    state_a, state_b = torch_load(a), torch_load(b)

    def flat(state: object, prefix: str = "") -> dict[str, object]:
        if isinstance(state, dict):
            return {k: v for key, value in state.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix: state}

    flat_a, flat_b = flat(state_a), flat(state_b)
    assert flat_a.keys() == flat_b.keys(), a
    for key, value in flat_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, flat_b[key]), f"{a}: {key}"  # type: ignore[arg-type]
        else:
            assert value == flat_b[key], f"{a}: {key}"


def _assert_same_file(a: Path, b: Path) -> None:
    """Same bytes where the format allows; else same values (cubes, tensors, arrays, JSON) but for
    measured timings, or same bytes but for a PDF's creation time."""
    if a.suffix == ".nc":
        _assert_same_cube(a, b)
    elif a.suffix == ".pt":
        _assert_same_tensors(a, b)
    elif a.suffix == ".npz":  # zip members carry their write time
        with np.load(a) as arrays_a, np.load(b) as arrays_b:
            assert sorted(arrays_a.files) == sorted(arrays_b.files), a
            for key in arrays_a.files:
                np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=f"{a}: {key}", strict=True)
    elif a.suffix == ".json":
        assert _without_timings(json.loads(a.read_text())) == _without_timings(json.loads(b.read_text())), a
    elif a.suffix == ".pdf":
        creation = rb"/CreationDate \(D:\d+Z\)"
        assert re.sub(creation, b"", a.read_bytes()) == re.sub(creation, b"", b.read_bytes()), a
    else:
        assert a.read_bytes() == b.read_bytes(), a


def _without_timings(value: object) -> object:
    """JSON ``value`` without the measured ``wall_time`` entries."""
    if isinstance(value, dict):
        return {key: _without_timings(item) for key, item in value.items() if "wall_time" not in key}
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


def _outputs(results: Path) -> list[Path]:
    """Every file under ``results`` (relative), without Snakemake's hidden markers."""
    return sorted(path.relative_to(results) for path in results.rglob("*") if path.is_file() and not path.name.startswith("."))


def test_tiny_configuration_through_slurm_equals_a_local_run(slurm_tiny: SlurmRun, tiny_workdir_results: Path) -> None:
    slurm, local = slurm_tiny.workdir / "results", tiny_workdir_results / "results"
    files = _outputs(local)
    assert _outputs(slurm) == files
    suffixes = {path.suffix for path in files}
    assert {".nc", ".pt", ".png", ".pdf", ".json", ".npz"} <= suffixes, suffixes
    assert len([path for path in files if path.name == "model.pt"]) == 5
    for path in files:
        _assert_same_file(slurm / path, local / path)


def test_only_gpu_rules_ask_slurm_for_a_gpu(slurm_tiny: SlurmRun) -> None:
    """GPUs as profiles/slurm asks for them (pretrain, curvature), read back from SLURM's record of each job."""
    gpus = {
        rule: int(resources.get("gpu", 0))
        for rule, resources in yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"].items()
    }
    assert gpus["pretrain"] == 1 and gpus["curvature"] == 1
    by_rule: dict[str, list[Submission]] = {}
    for sub in slurm_tiny.submissions:
        rule = re.fullmatch(r"rule_([a-z_]+?)(_wildcards_.*)?", sub.comment)
        assert rule, sub.comment
        by_rule.setdefault(rule.group(1), []).append(sub)
    assert all(len(by_rule[rule]) == 5 for rule in gpus) and len(by_rule) > len(gpus), sorted(by_rule)  # one per run
    local = [rule for rule in by_rule if rule.startswith("figure") or rule in ("claims", "metrics", "configuration")]
    assert not local, f"figures, claims and metrics run on the submitting node: {local}"
    for rule, subs in by_rule.items():
        for sub in subs:
            wanted = gpus.get(rule, 0)
            assert sub.gpus == wanted, (rule, sub.job)
            assert ("--gpus=1" in sub.argv) == (wanted == 1) and not any(arg.startswith("--gres") for arg in sub.argv), sub.argv
            assert {"-p", "debug"} <= set(sub.argv) and "--cpus-per-task=1" in sub.argv and sub.job["Partition"] == "debug"


# --- preemption and failure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreemptedRun:
    workdir: Path
    params: dict
    result: subprocess.CompletedProcess[str]
    killed_job: str
    killed_at: int
    submissions: list[Submission]
    states: dict[str, str]


def _preempt_params() -> dict:
    """Two runs: one long enough (400 steps, a checkpoint every 40) to be cancelled mid-run, one that diverges."""
    params = yaml.safe_load(TINY.read_text())
    params["model"].update(backbone_width=256, head_hidden=256)
    params["train"].update(steps=400, checkpoint_every=40, batch_size=256)
    params["schedule"].update(every=100)
    params["sweep"] = {
        "grid": None,
        "include": [
            {"loss": "simsiam", "activation": "swish", "depth": 2, "batchnorm": False, "init": "collapsed", "lr": 0.05, "seed": 0},
            {"loss": "vicreg", "activation": "linear", "depth": 2, "batchnorm": False, "init": "normal", "lr": 10.0, "seed": 0},
        ],
    }
    return params


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch_load(path)["step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def _workdir(base: Path, params: dict) -> Path:
    workdir = base / "work"
    workdir.mkdir()
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return workdir


@pytest.fixture(scope="module")
def slurm_runs(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[SlurmRun, PreemptedRun]:
    """The tiny configuration and the preemption pair through profiles/slurm, both at once on the cluster.

    (Much of a SLURM run's wall time is the executor plugin waiting between status checks, so the two
    workflows share it.) The pair runs with --keep-going; its first run is `scancel`led once it has written
    its first checkpoint.
    """
    tiny_base, pair_base = tmp_path_factory.mktemp("slurm_tiny"), tmp_path_factory.mktemp("slurm_preempt")
    tiny_dir = _workdir(tiny_base, yaml.safe_load(TINY.read_text()))
    pair_dir = _workdir(pair_base, _preempt_params())
    targets = [f"results/runs/{run}/model.pt" for run in (RESUMED, DIVERGES)]
    start = time.monotonic()
    tiny = start_snakemake(cluster, tiny_dir, make_profile(cluster, tiny_base / "profile"), limit=SLURM_LIMIT_S)
    pair = start_snakemake(cluster, pair_dir, make_profile(cluster, pair_base / "profile"), "--keep-going", *targets, limit=SLURM_LIMIT_S)
    checkpoint = pair_dir / "results" / "resume" / RESUMED / CHECKPOINT
    killed_job, killed_at = "", -1
    try:
        deadline = start + SLURM_LIMIT_S
        while time.monotonic() < deadline and pair.poll() is None:
            step = _checkpoint_step(checkpoint) if checkpoint.is_file() else None
            if step is not None and step >= 40:
                killed_job = next(sub.job_id for sub in cluster.submissions() if sub.comment.endswith(RESUMED))
                cluster.command("scancel", killed_job)
                break
            time.sleep(0.05)
        assert killed_job, f"no checkpoint to cancel after: {(pair_dir / 'snakemake.err').read_text()[-4000:]}"
        # Until CANCELLED (no longer COMPLETING): SLURM has ended every process of the job.
        while cluster.jobs().get(killed_job) in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = _checkpoint_step(checkpoint) or -1
        tiny_result = finish_snakemake(cluster, tiny, tiny_dir, SLURM_LIMIT_S, cancel=False)
    except BaseException:  # do not wait for the runs to end by themselves
        for proc in (tiny, pair):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        pair_result = finish_snakemake(cluster, pair, pair_dir, SLURM_LIMIT_S)
        if tiny.poll() is None:
            finish_snakemake(cluster, tiny, tiny_dir, SLURM_LIMIT_S)
    assert tiny_result.returncode == 0, tiny_result.stderr[-6000:]
    states = cluster.jobs()
    submissions = cluster.submissions()

    def of(workdir: Path) -> list[Submission]:
        return [sub for sub in submissions if sub.job.get("WorkDir") == str(workdir)]

    return (
        SlurmRun(tiny_dir, tiny_result, of(tiny_dir)),
        PreemptedRun(pair_dir, _preempt_params(), pair_result, killed_job, killed_at, of(pair_dir), states),
    )


@pytest.fixture(scope="module")
def slurm_tiny(slurm_runs: tuple[SlurmRun, PreemptedRun]) -> SlurmRun:
    return slurm_runs[0]


@pytest.fixture(scope="module")
def preempted(slurm_runs: tuple[SlurmRun, PreemptedRun]) -> PreemptedRun:
    return slurm_runs[1]


def test_cancelled_training_job_is_retried_and_resumes_bitwise(preempted: PreemptedRun, tmp_path: Path) -> None:
    out = preempted.result.stdout + preempted.result.stderr
    jobs = [sub.job_id for sub in preempted.submissions if sub.comment.endswith(RESUMED)]
    assert len(jobs) == 2 and jobs[0] == preempted.killed_job, out[-4000:]
    assert preempted.states[jobs[0]] == "CANCELLED" and preempted.states[jobs[1]] == "COMPLETED"
    assert f"SLURM-job '{jobs[0]}' failed, SLURM status is: 'CANCELLED'" in out
    assert 40 <= preempted.killed_at < 400, "cancelled after its first checkpoint and before it finished"
    log = (preempted.workdir / "logs" / "pretrain" / f"{RESUMED}.log").read_text()
    resumed = re.findall(rf"resumed from results/resume/{re.escape(RESUMED)}/{re.escape(CHECKPOINT)} at step (\d+)", log)
    assert resumed == [str(preempted.killed_at)], log[-2000:]

    results = preempted.workdir / "results"
    straight = RunPaths.under(tmp_path / "out", tmp_path / "resume")
    pretrain(run_config(validate_params(copy.deepcopy(preempted.params)), RESUMED), results / "data" / "digits.npz", straight, threads=1)
    _assert_same_tensors(results / "runs" / RESUMED / "model.pt", straight.model)
    _assert_same_cube(results / "runs" / RESUMED / "dynamics.nc", straight.dynamics)
    assert not (results / "resume" / RESUMED).exists() or not any((results / "resume" / RESUMED).iterdir())


def test_run_failing_for_good_is_reported_and_leaves_nothing_finished(preempted: PreemptedRun) -> None:
    out = preempted.result.stdout + preempted.result.stderr
    assert preempted.result.returncode == 1, out[-4000:]
    jobs = [sub for sub in preempted.submissions if sub.comment.endswith(DIVERGES)]
    assert len(jobs) == 3 and all(sub.gpus == 1 for sub in jobs), "first attempt and the profile's 2 retries"
    for sub in jobs:
        assert preempted.states[sub.job_id] == "FAILED"
        assert f"SLURM-job '{sub.job_id}' failed, SLURM status is: 'FAILED'" in out
    assert "Error in rule pretrain" in out and DIVERGES in out
    assert re.search(rf"TrainingDivergedError: run {re.escape(DIVERGES)}: loss is (nan|inf) at step \d+", out), "the job's log is shown"
    run = preempted.workdir / "results" / "runs" / DIVERGES
    assert not run.exists() or not any(run.iterdir()), sorted(run.rglob("*"))
    assert not (preempted.workdir / "results" / "dynamics.nc").exists()
