"""The quickstart study's HTML report: self-contained, and rendered by a real browser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from tests.browser import ensure_chromium, headless

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "results" / "test-artifacts"
PLOTS = {"pareto", "latency", "history", "importance", "errors"}


@pytest.fixture(scope="module")
def report(quickstart) -> Path:
    assert quickstart.proc.returncode == 0, quickstart.proc.stderr[-3000:]
    html = quickstart.out / "report.html"
    html.unlink()
    proc = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "report",
                           str(quickstart.out), "--html"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return html


def test_the_report_is_one_self_contained_page(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"""(src|href)=["']https?://""", text)
    assert "<link" not in text and "<script src" not in text
    ids = set(re.findall(r'<img class="plot" id="plot-([a-z]+)" [^>]*src="data:image/png;'
                         r'base64,[A-Za-z0-9+/=]{1000,}"', text))
    assert ids == PLOTS
    for words in ("The question", "The answer", "interactive", "batch", "Qwen3-32B",
                  "a100_80gb", "meets the SLA live", "best/batch/deployment.yaml",
                  "Predicted vs verified", "TTFT p90"):
        assert words in text, words


def test_the_report_renders_in_headless_chromium(report: Path) -> None:
    chromium = ensure_chromium()
    dom = headless(chromium, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None
    assert f'data-plots="{len(PLOTS)}"' in body.group(0), body.group(0)
    assert f'data-plots-ok="{len(PLOTS)}"' in body.group(0), body.group(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-quickstart.png"
    shot.unlink(missing_ok=True)
    run = headless(chromium, f"--screenshot={shot}", "--window-size=1280,5200",
                   "--hide-scrollbars", report.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 5000 and pixels.shape[1] == 1280
    assert pixels.std() > 0.05  # not a blank page
