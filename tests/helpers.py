"""Helpers shared by the end-to-end tests: run the repository's Snakefile in a work folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
BIN = Path(sys.executable).parent


def tool_env(workdir: Path) -> dict[str, str]:
    """Environment with the venv's tools first on PATH and caches inside ``workdir``."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CACHE_HOME": str(workdir / ".cache"),
        "MPLCONFIGDIR": str(workdir / ".mpl"),
    }


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile in ``workdir`` (which holds its own params.yaml)."""
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile", str(workdir / "params.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=tool_env(workdir), cwd=workdir)
