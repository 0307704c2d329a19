"""The tests' local SLURM cluster (geomhead.slurm_local) and Snakemake runs on it that cannot hang.

Every Snakemake-on-SLURM call runs under ``timeout -k 10 <limit>`` (a hung Snakemake ignores SIGTERM, so
SIGKILL follows 10 s later), with a Python-side timeout above that, in its own process group, and is
followed by cancelling every job left on the cluster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from geomhead.slurm_local import LocalCluster, SlurmUnavailable, local_cluster, missing_programs, site_profile
from helpers import BIN, ROOT, tool_env

PROFILE = ROOT / "profiles" / "slurm"
#: Set (as .ci/run does) to turn a missing SLURM into a failure instead of a skip.
REQUIRE_ENV = "GEOMHEAD_REQUIRE_SLURM"
KILL_AFTER_S = 10


def unavailable_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    missing = missing_programs() + [tool for tool in ("timeout",) if shutil.which(tool) is None]
    if missing:
        return f"SLURM programs not installed: {', '.join(missing)} (.ci/run installs Debian's slurm-wlm slurmctld slurmd slurm-client)"
    plugins = [
        name
        for name in ("snakemake_executor_plugin_slurm", "snakemake_executor_plugin_slurm_jobstep")
        if importlib.util.find_spec(name) is None
    ]
    if plugins:
        return f"Snakemake SLURM plugins not installed: {', '.join(plugins)} (pip install -e '.[test]')"
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead where :data:`REQUIRE_ENV` is set (CI)."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def cluster_or_skip(root: Path, **kwargs: int) -> Iterator[LocalCluster]:
    """:func:`geomhead.slurm_local.local_cluster`, skipped (or failed in CI) when SLURM is not available."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(local_cluster(root, **kwargs))
        except SlurmUnavailable as error:
            skip_or_fail(f"the local SLURM cluster did not start: {error}")
        yield cluster


def make_profile(cluster: LocalCluster, dest: Path) -> Path:
    """profiles/slurm with its SITE values set for the local node (1 thread and 1000 MB per job)."""
    return site_profile(PROFILE, dest, partition=cluster.partition, mem_mb=1000, threads=1)


def snakemake_command(workdir: Path, profile: Path, *args: str, limit: int) -> list[str]:
    """``timeout -k 10 <limit> snakemake --profile <profile> ...`` on the repository's Snakefile in ``workdir``."""
    return [
        "timeout", "-k", str(KILL_AFTER_S), str(limit),
        str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile", str(workdir / "params.yaml"),
        "--profile", str(profile), *args,
    ]  # fmt: skip


def start_snakemake(cluster: LocalCluster, workdir: Path, profile: Path, *args: str, limit: int) -> subprocess.Popen[str]:
    """Start Snakemake on the cluster in the background (own process group; stdout and stderr to files in ``workdir``)."""
    with open(workdir / "snakemake.out", "w") as out, open(workdir / "snakemake.err", "w") as err:
        return subprocess.Popen(
            snakemake_command(workdir, profile, *args, limit=limit),
            stdout=out, stderr=err, text=True, cwd=workdir, env=cluster.env(tool_env(workdir)), start_new_session=True,
        )  # fmt: skip


def finish_snakemake(
    cluster: LocalCluster, proc: subprocess.Popen[str], workdir: Path, limit: int, *, cancel: bool = True
) -> subprocess.CompletedProcess[str]:
    """Wait for a run from :func:`start_snakemake`; kill its process group if ``timeout`` itself hangs;
    then (``cancel``) cancel every job left on the cluster."""
    try:
        proc.wait(timeout=limit + KILL_AFTER_S + 20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if cancel:
            cluster.cancel_all()
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, (workdir / "snakemake.out").read_text(), (workdir / "snakemake.err").read_text()
    )
