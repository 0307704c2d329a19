"""Glue between Snakemake and the library: conda check, GPU resources, logging of script rules."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PRETRAIN_SECTIONS = ("data", "augment", "model", "losses", "train", "schedule", "tracking", "sweep")
CONDA_MESSAGE = (
    "geomhead: --use-conda was given but no conda, mamba or micromamba is installed here, so workflow/envs cannot be built; "
    "install Miniforge, or run without --use-conda inside the environment from `pip install -e .` (same pins)."
)


def conda_available() -> bool:
    """Whether a conda frontend is on PATH."""
    return any(shutil.which(tool) for tool in ("conda", "mamba", "micromamba"))


def check_conda(workflow: Any) -> None:
    """Stop with a one-line explanation when ``--use-conda`` is asked for but no conda exists.

    (Snakemake itself would fail later with ``Error running conda info``.)
    """
    from snakemake.settings.types import DeploymentMethod

    methods = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", set()) or set()
    if DeploymentMethod.CONDA in methods and not conda_available():
        sys.stderr.write(CONDA_MESSAGE + "\n")
        sys.exit(1)


def expose_library(src: str | Path) -> None:
    """Put ``src`` first on ``PYTHONPATH`` so that rule scripts (also in conda envs) import geomhead."""
    paths = [str(src), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def gpu_count(config: Mapping[str, Any]) -> int:
    """``gpu`` resource of training rules: 1 when training will run on CUDA, else 0."""
    device = config["train"]["device"]
    if device == "cpu":
        return 0
    if device == "cuda":
        return 1
    import torch

    return int(torch.cuda.is_available())


def params_json(config: Mapping[str, Any], *sections: str) -> str:
    """The sections pretraining depends on, plus ``sections``, as canonical JSON (provenance of a cube)."""
    return json.dumps({k: config[k] for k in (*PRETRAIN_SECTIONS, *sections)}, sort_keys=True)


@contextlib.contextmanager
def logged(log: Any) -> Iterator[None]:
    """Send stdout and stderr (tqdm included) of a script rule to its log file; an exception's
    traceback is written there too before it propagates (so the rule's log says why it failed)."""
    paths = list(log) if log else []
    if not paths:
        yield
        return
    Path(paths[0]).parent.mkdir(parents=True, exist_ok=True)
    with open(paths[0], "a", buffering=1) as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
