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
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.split(r"^rule ", text, flags=re.M)[1:]:
            name = rule.split(":")[0]
            assert "\n    log:" in rule, f"{smk.name}: rule {name} has no log"
            assert "\n    conda:" in rule, f"{smk.name}: rule {name} has no conda env"
