"""`snakemake --report`: one self-contained HTML page with every figure, the claims and the configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from geomhead.figures import FIGURES
from helpers import snakemake, tool_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--virtual-time-budget=10000"]  # fmt: skip


@pytest.fixture(scope="module")
def report(tiny_workdir_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"  # outside results/: other tests compare that folder
    result = snakemake(tiny_workdir_results, "--report", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_report_holds_every_figure_the_claims_and_the_configuration(report: Path) -> None:
    text = report.read_text()
    for name in FIGURES:
        assert f"results/figures/{name}.png" in text, name
    for item in ("results/claims.html", "results/configuration.html"):
        assert item in text, item
    for caption in ("Collapse dynamics", "Hessian tracker", "The guillotine", "Augmentation orbits", "Head-depth ablation"):
        assert caption in text, caption
    assert text.count("data:image/png") >= len(FIGURES), "images are embedded, not linked"


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    remote = re.findall(r"<(?:script|link)[^>]+(?:src|href)=[\"']https?://", text)
    assert not remote, remote[:3]


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    profile = cwd / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=tool_env(cwd)
    )


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("GEOMHEAD_REQUIRE_CHROMIUM") != "1", reason="no chromium here")
def test_headless_chromium_renders_the_report(report: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "GEOMHEAD_REQUIRE_CHROMIUM=1 but chromium is not installed"
    dom = _chromium("--dump-dom", report.as_uri(), cwd=tmp_path).stdout
    assert 'id="loading-screen" style="display: none;"' in dom, "the report's scripts ran"
    app = dom[dom.index('<div id="app">') :]
    for text in ("Claims", "Figures", "Configuration"):
        assert f">{text}<" in app, f"menu entry {text} rendered"
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,1000", report.as_uri(), cwd=tmp_path)
    with Image.open(shot) as image:
        assert image.size == (1400, 1000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the page rendered more than a blank or a loading screen"
