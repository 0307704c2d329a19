"""workflow/envs pins the same versions as pyproject.toml; every rule has a log and a conda env."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_pins_match_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {d.split("==")[0].lower(): d.split("==")[1] for d in deps}
    assert all("==" in d for d in deps), "pin every runtime dependency exactly"
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "geomhead.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    in_env = {d.split("==")[0].lower(): d.split("==")[1] for d in pip}
    assert in_env == pinned
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"


def test_every_rule_has_log_and_conda() -> None:
    """Every rule that runs something (a target-only rule such as `figures` runs nothing), including the
    rules defined in a loop (`rule:` with `name:`); `snakemake --lint` checks the same (test_workflow)."""
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.split(r"^\s*rule\b", text, flags=re.M)[1:]:
            name = rule.split(":")[0].strip() or rule.split("name:")[1].split()[0]
            if not re.search(r"\n\s+(script|shell|run):", rule):
                continue
            assert re.search(r"\n\s+log:", rule), f"{smk.name}: rule {name} has no log"
            assert re.search(r"\n\s+conda:", rule), f"{smk.name}: rule {name} has no conda env"
