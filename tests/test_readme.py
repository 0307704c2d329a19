"""README.md: its quickstart is what CI runs, and its xarray snippet runs on real pipeline output."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def snippet(name: str) -> str:
    """The python block that follows ``<!-- snippet: name ... -->``."""
    match = re.search(rf"<!-- snippet: {name}\b.*?-->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README.md has no snippet {name!r}"
    return match.group(1)


def quickstart() -> list[str]:
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README, re.S)
    assert block
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_and_ci_runs_them() -> None:
    install_and_run, test = quickstart()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines(), "CI must call README's test command verbatim"
    for step in install_and_run.split(" && ")[:2]:
        assert step.split(" -e ")[0].split()[0] in ci


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dynamics", ["activation", "swish"]),
        ("curvature", ["simsiam-swish-d2-bn0-collapsed-lr0.05-s0", "step"]),
        ("geometry", ["linear", "mlp", "total"]),
    ],
)
def test_snippet_runs_on_pipeline_output(
    name: str, expected: list[str], tiny_workdir_results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tiny_workdir_results)
    script = tiny_workdir_results / f"snippet_{name}.py"
    script.write_text(snippet(name))
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    for needle in expected:
        assert needle in out, (needle, out)
