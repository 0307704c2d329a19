"""A throwaway single-node SLURM cluster on this machine, for the tests and for trying ``profiles/slurm``.

It installs nothing: it expects Debian's ``slurm-wlm`` daemons and clients (``.ci/run`` installs them).
:func:`local_cluster` writes ``slurm.conf`` and ``gres.conf`` into a folder (free ports, state, spool, pid
and log files all inside it; ``auth/none``, no accounting, one partition, one node with this machine's CPUs
and memory and fake GPUs ``Gres=gpu:N`` backed by ``/dev/null``, ``/dev/zero``, ...), starts ``slurmctld -D`` and
``slurmd -D``, waits until ``sinfo`` shows the node idle, and on exit cancels every job and stops both
daemons by PID, however the ``with`` block ends (an ``atexit`` hook covers an interpreter that exits
without unwinding it).

Two wrappers go first on ``PATH`` (:meth:`LocalCluster.env`):

- ``srun`` re-exports ``SLURM_CONF``: the jobstep executor plugin removes every ``SLURM_*`` variable
  before its inner ``srun``, which would otherwise look for ``/etc/slurm/slurm.conf``;
- ``sbatch`` submits, then records its argv and SLURM's own view of the new job (``scontrol -o show
  job``) under ``submissions/`` (:meth:`LocalCluster.submissions`), so tests can check what was asked for.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Programs the local cluster needs (Debian packages slurm-wlm, slurmctld, slurmd, slurm-client).
REQUIRED_PROGRAMS = ("slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "srun", "scancel", "scontrol")
#: Seconds a finished job stays visible to ``squeue`` (the executor plugin's squeue status command needs
#: at least 3 x its ``init-seconds-before-status-checks``).
MIN_JOB_AGE = 300
#: Device files standing in for GPUs (any distinct files do; these exist on every Linux).
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
#: File marking a folder of wrappers (so that a wrapper never calls another cluster's wrapper).
WRAPPER_MARK = ".geomhead-slurm-wrappers"


class SlurmUnavailable(RuntimeError):
    """The SLURM programs are not installed, or the daemons did not bring a node up."""


@dataclass(frozen=True)
class Submission:
    """One ``sbatch`` call seen by the wrapper.

    Attributes:
        job_id: SLURM's job id.
        argv: The arguments given to ``sbatch``.
        job: ``scontrol -o show job`` right after submission, as ``{field: value}``.
    """

    job_id: str
    argv: tuple[str, ...]
    job: dict[str, str]

    @property
    def comment(self) -> str:
        """The job's ``--comment`` (the executor plugin writes the rule and wildcards there)."""
        return self.job.get("Comment", "")

    @property
    def gpus(self) -> int:
        """GPUs SLURM holds for the job: the ``gpu`` count in its ``TresPerJob``/``TresPerNode`` (0 when none).

        (``--gpus=1`` shows as ``TresPerJob=gres:gpu:1``, ``--gres=gpu:a100:1`` as ``TresPerNode=gres:gpu:a100:1``.)
        """
        tres = ",".join(self.job.get(key, "") for key in ("TresPerJob", "TresPerNode", "TresPerSocket", "TresPerTask"))
        return sum(int(count) for count in re.findall(r"gres[:/]gpu(?::[^:,=]+)?[:=](\d+)", tres))


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster.

    Attributes:
        root: Folder holding its configuration, state, logs and wrappers.
        conf: Its ``slurm.conf`` (export as ``SLURM_CONF``).
        bin: Folder of the ``srun``/``sbatch`` wrappers (first on ``PATH``).
        node: Name of its only node.
        partition: Name of its only partition (the default one).
        cpus: CPUs of the node.
        memory_mb: Memory of the node in MB.
        gpus: Fake GPUs of the node.
        pids: PIDs of slurmctld and slurmd.
    """

    root: Path
    conf: Path
    bin: Path
    node: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    pids: tuple[int, int]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) with ``SLURM_CONF`` set and the wrappers first on ``PATH``."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def command(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client (``squeue``, ``scontrol``, ``scancel``, ...) against this cluster; its stdout."""
        result = subprocess.run(args, capture_output=True, text=True, env=self.env(), timeout=timeout)
        if result.returncode != 0:
            raise SlurmUnavailable(f"{shlex.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def jobs(self) -> dict[str, str]:
        """Every job SLURM still knows (also finished ones, for MinJobAge), as ``{job_id: state}``."""
        out = self.command("squeue", "--noheader", "--states=all", "--format=%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def submissions(self) -> list[Submission]:
        """Every ``sbatch`` call so far, in submission order."""
        subs = []
        for argv_file in (self.root / "submissions").glob("*.argv"):
            job_id = argv_file.stem
            argv = tuple(filter(None, argv_file.read_bytes().decode().split("\0")))
            job_file = argv_file.with_suffix(".job")
            job = parse_scontrol(job_file.read_text()) if job_file.is_file() else {}
            subs.append(Submission(job_id, argv, job))
        return sorted(subs, key=lambda sub: int(sub.job_id))

    def cancel_all(self, timeout: float = 20) -> None:
        """Cancel every job and wait until none is running or completing."""
        with contextlib.suppress(SlurmUnavailable, subprocess.TimeoutExpired):
            self.command("scancel", f"--partition={self.partition}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = set(self.jobs().values())
            except (SlurmUnavailable, subprocess.TimeoutExpired):
                return
            if not states & {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}:
                return
            time.sleep(0.2)


def missing_programs() -> list[str]:
    """The programs of :data:`REQUIRED_PROGRAMS` that are not on ``PATH`` (or in /usr/sbin, /sbin)."""
    missing = []
    for name in REQUIRED_PROGRAMS:
        try:
            _program(name)
        except SlurmUnavailable:
            missing.append(name)
    return missing


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol -o show ...`` output (``Key=Value`` separated by spaces) as a dict.

    Values may contain spaces (``Command=``, ``Comment=``): a token without ``=``, or whose key is not a
    capitalised word, continues the previous value.
    """
    fields: dict[str, str] = {}
    key = None
    for token in text.strip().split(" "):
        head, sep, value = token.partition("=")
        if sep and re.fullmatch(r"[A-Z][A-Za-z0-9_/:]*", head):
            key = head
            fields[key] = value
        elif key is not None:
            fields[key] += f" {token}"
    return {key: value.strip() for key, value in fields.items()}


def hardware() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) of this machine as slurmd sees it (``slurmd -C``)."""
    slurmd = _program("slurmd")
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
    fields = parse_scontrol(out.splitlines()[0] if out else "")
    try:
        return int(fields["CPUs"]), int(fields["RealMemory"])
    except (KeyError, ValueError) as error:
        raise SlurmUnavailable(f"`slurmd -C` did not report CPUs and RealMemory: {out!r}") from error


def slurm_conf(
    root: Path, *, host: str, user: str, ports: tuple[int, int], cpus: int, memory_mb: int, gpus: int, partition: str = "debug"
) -> str:
    """Text of a single-node ``slurm.conf`` whose files all live under ``root``.

    Args:
        root: Folder for state, spool, pid and log files.
        host: Short host name (node and controller; both reached at 127.0.0.1).
        user: User the daemons run as (SlurmUser, SlurmdUser).
        ports: (SlurmctldPort, SlurmdPort).
        cpus: CPUs of the node.
        memory_mb: RealMemory of the node in MB (at most what ``slurmd -C`` reports).
        gpus: Fake GPUs of the node (0 for none).
        partition: Name of the only partition (the default one).
    """
    for name, value in (("cpus", cpus), ("memory_mb", memory_mb)):
        if value < 1:
            raise ValueError(f"{name}={value} is not allowed; must be >= 1")
    if gpus < 0:
        raise ValueError(f"gpus={gpus} is not allowed; must be >= 0")
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    lines = [
        f"ClusterName=geomhead{ports[0]}",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/none",
        "CredType=cred/none",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=500",
        "SchedulerParameters=batch_sched_delay=0",
        "GresTypes=gpu",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",  # the node is what this file says, even more CPUs than the machine has
        f"MinJobAge={MIN_JOB_AGE}",
        "KillWait=2",  # seconds between SIGTERM and SIGKILL when a job is cancelled
        "InactiveLimit=0",
        "MailProg=/bin/true",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}{gres} State=UNKNOWN",
        f"PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def gres_conf(host: str, gpus: int) -> str:
    """``gres.conf`` declaring ``gpus`` fake GPUs on ``host``, backed by distinct character devices.

    (slurmd refuses two GPUs on one device file; nothing ever opens them, as no job runs on a GPU here.)
    """
    if not 0 <= gpus <= len(FAKE_GPU_FILES):
        raise ValueError(f"gpus={gpus} is not allowed; must be between 0 and {len(FAKE_GPU_FILES)}")
    return "".join(f"NodeName={host} Name=gpu File={path}\n" for path in FAKE_GPU_FILES[:gpus])


def write_wrappers(bin_dir: Path, conf: Path, submissions: Path) -> None:
    """Write the ``srun`` and ``sbatch`` wrappers (see the module docstring) into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    submissions.mkdir(parents=True, exist_ok=True)
    srun, sbatch, scontrol = (_program(name) for name in ("srun", "sbatch", "scontrol"))
    conf_q, subs_q = shlex.quote(str(conf)), shlex.quote(str(submissions))
    scripts = {
        "srun": f'#!/bin/sh\nexport SLURM_CONF={conf_q}\nexec {shlex.quote(srun)} "$@"\n',
        "sbatch": (
            "#!/bin/sh\n"
            f"export SLURM_CONF={conf_q}\n"
            f'out=$({shlex.quote(sbatch)} "$@")\n'
            "rc=$?\n"
            'printf "%s\\n" "$out"\n'
            '[ "$rc" -eq 0 ] || exit "$rc"\n'
            "id=$(printf '%s' \"$out\" | grep -o '[0-9][0-9]*' | head -n 1)\n"
            '[ -n "$id" ] || exit 0\n'
            f'printf \'%s\\0\' "$@" > {subs_q}/"$id".argv\n'
            f'{shlex.quote(scontrol)} -o show job "$id" > {subs_q}/"$id".job 2>&1\n'
            "exit 0\n"
        ),
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    (bin_dir / WRAPPER_MARK).write_text("SLURM wrappers of geomhead.slurm_local; the real programs are looked up elsewhere.\n")


@contextlib.contextmanager
def local_cluster(
    root: Path,
    *,
    cpus: int | None = None,
    memory_mb: int | None = None,
    gpus: int = 1,
    partition: str = "debug",
    timeout: float = 30.0,
) -> Iterator[LocalCluster]:
    """Start a single-node cluster under ``root``; cancel its jobs and stop its daemons on exit.

    Args:
        root: Folder for everything the cluster writes (created; should be empty).
        cpus: CPUs of the node (default: this machine's, from ``slurmd -C``).
        memory_mb: Memory of the node in MB (default: 90% of what ``slurmd -C`` reports).
        gpus: Fake GPUs on the node.
        partition: Name of the only partition.
        timeout: Seconds to wait for the node to become idle.

    Raises:
        SlurmUnavailable: programs missing, or the node did not come up (the daemon logs are quoted).
    """
    missing = missing_programs()
    if missing:
        raise SlurmUnavailable(
            f"SLURM programs not found: {', '.join(missing)}; install Debian's slurm-wlm slurmctld slurmd slurm-client (see .ci/run)"
        )
    hw_cpus, hw_memory = hardware()
    cpus = hw_cpus if cpus is None else cpus
    memory_mb = int(hw_memory * 0.9) if memory_mb is None else memory_mb
    root = Path(root).resolve()
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    ctld_port, slurmd_port = free_port(), free_port()
    while slurmd_port == ctld_port:
        slurmd_port = free_port()
    conf.write_text(
        slurm_conf(
            root,
            host=host,
            user=getpass.getuser(),
            ports=(ctld_port, slurmd_port),
            cpus=cpus,
            memory_mb=memory_mb,
            gpus=gpus,
            partition=partition,
        )
    )
    (root / "gres.conf").write_text(gres_conf(host, gpus))
    write_wrappers(root / "bin", conf, root / "submissions")

    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen[bytes]] = []

    def stop() -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    atexit.register(stop)
    cluster = None
    try:
        for name in ("slurmctld", "slurmd"):
            with open(root / f"{name}.out", "wb") as out:
                procs.append(subprocess.Popen([_program(name), "-D", "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT, env=env))
            if name == "slurmctld":
                _wait_for(lambda: _controller_up(env), timeout, "slurmctld did not answer", root)
        _wait_for(lambda: _node_idle(env, host), timeout, f"node {host} did not become idle", root)
        cluster = LocalCluster(root, conf, root / "bin", host, partition, cpus, memory_mb, gpus, (procs[0].pid, procs[1].pid))
        yield cluster
    finally:
        if cluster is not None:
            cluster.cancel_all()
            _kill_job_processes(cluster)
        stop()
        atexit.unregister(stop)


def _program(name: str) -> str:
    """The real SLURM program ``name``: on PATH or in /usr/sbin, /sbin, never a folder of our wrappers."""
    folders = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]
    search = os.pathsep.join(folder for folder in folders if folder and not (Path(folder) / WRAPPER_MARK).exists())
    path = shutil.which(name, path=search)
    if path is None:
        raise SlurmUnavailable(f"SLURM program {name!r} not found")
    return path


def _controller_up(env: Mapping[str, str]) -> bool:
    result = subprocess.run([_program("scontrol"), "ping"], capture_output=True, text=True, env=dict(env), timeout=10)
    return result.returncode == 0 and " is UP" in result.stdout


def _node_idle(env: Mapping[str, str], host: str) -> bool:
    result = subprocess.run(
        [_program("sinfo"), "--noheader", "--Node", "--format=%N %t", "--nodes", host],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=10,
    )
    return result.returncode == 0 and result.stdout.split() == [host, "idle"]


def _wait_for(ready: Callable[[], bool], timeout: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    logs = "\n".join(
        f"--- {path.name}:\n{path.read_text()[-2000:]}" for path in sorted(root.glob("slurm*.log")) + sorted(root.glob("*.out"))
    )
    raise SlurmUnavailable(f"{what} within {timeout:g} s (config {root / 'slurm.conf'})\n{logs}")


def _kill_job_processes(cluster: LocalCluster) -> None:
    """SIGKILL, one PID at a time, any job process that cancellation left behind on the node."""
    with contextlib.suppress(SlurmUnavailable, subprocess.TimeoutExpired):
        out = cluster.command("scontrol", "listpids", timeout=10)
        for line in out.splitlines()[1:]:
            pid = line.split()[0] if line.split() else ""
            if pid.isdigit() and int(pid) != os.getpid():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)


def site_profile(profile: Path, dest: Path, *, partition: str = "debug", mem_mb: int = 1000, threads: int = 1) -> Path:
    """Copy a SLURM profile folder to ``dest``, changing only its site values to fit a small local node.

    The executor, retries, status command and ``gpu`` requests stay as they are; the partition, the memory
    of every job (``mem_mb``) and the threads of every rule in ``set-threads`` (``threads``, which also sets
    the CPUs per job) are replaced. Other files of the folder are copied unchanged.

    Args:
        profile: Folder holding the profile's ``config.yaml`` (e.g. ``profiles/slurm``).
        dest: Folder to write (created).
        partition: Partition to submit to.
        mem_mb: Memory of every job in MB.
        threads: Threads of every rule listed in ``set-threads``.

    Returns:
        ``dest``, for ``snakemake --profile``.
    """
    import yaml

    for name, value in (("mem_mb", mem_mb), ("threads", threads)):
        if value < 1:
            raise ValueError(f"{name}={value} is not allowed; must be >= 1")
    config = yaml.safe_load((Path(profile) / "config.yaml").read_text())
    defaults = dict(config.get("default-resources") or {})
    defaults.update(slurm_partition=partition, mem_mb=mem_mb)
    config["default-resources"] = defaults
    config["set-resources"] = {
        rule: {**resources, **({"mem_mb": mem_mb} if "mem_mb" in resources else {})}
        for rule, resources in (config.get("set-resources") or {}).items()
    }
    config["set-threads"] = dict.fromkeys(config.get("set-threads") or {}, threads)
    shutil.copytree(profile, dest, dirs_exist_ok=True)
    (Path(dest) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(dest)


def main(argv: list[str] | None = None) -> int:
    """Start a local cluster, print how to use it, and stop it on Ctrl-C (or SIGTERM)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="A single-node SLURM cluster on this machine, to try profiles/slurm.")
    parser.add_argument("--root", type=Path, help="folder for the cluster's files (default: a new temporary folder)")
    parser.add_argument("--gpus", type=int, default=1, help="fake GPUs on the node (default 1)")
    parser.add_argument("--profile", type=Path, default=Path("profiles/slurm"), help="SLURM profile to adapt (default profiles/slurm)")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="geomhead-slurm-"))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        with local_cluster(root, gpus=args.gpus) as cluster:
            profile = site_profile(args.profile, root / "profile", partition=cluster.partition)
            print(
                f"SLURM cluster up: node {cluster.node} ({cluster.cpus} CPUs, {cluster.memory_mb} MB, {cluster.gpus} fake GPU), "
                f"partition {cluster.partition}, daemons {cluster.pids[0]} and {cluster.pids[1]}, files in {root}\n"
                f"{args.profile} with its SITE values set for this node: {profile}\n"
                "In another shell, in the repository:\n"
                f'  export SLURM_CONF={shlex.quote(str(cluster.conf))} PATH={shlex.quote(str(cluster.bin))}:"$PATH"\n'
                f"  snakemake --profile {shlex.quote(str(profile))} --configfile tests/configs/tiny.yaml\n"
                "  squeue; scontrol show job <id>\n"
                "Ctrl-C cancels every job and stops the cluster.",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0
    except SlurmUnavailable as error:
        print(f"error: {error}", flush=True)
        return 1
