"""report.html in a real browser: headless Chromium opens it without console errors, the DOM carries
the verdict and one image per plot, and a screenshot shows the plots (a big, colourful PNG).

No broker needed: the run directory is synthetic (reports.synthetic: a ledger, a chaos journal with
fault windows, queue samples). Skips when Chromium is absent (``apt-get install chromium``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import rundir
from reports.audit import audit_run
from reports.synthetic import SyntheticFault, write_synthetic_run
from reports.writers import write_all

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_S = 90
WIDTH, HEIGHT = 1280, 2000
FAULTS = (
    SyntheticFault("kill", "node:2", 15.0, 6.0, 1.5),
    SyntheticFault("partition", "isolate:3", 40.0, 10.0, 3.0),
)
#: Plot ids rendered by reports.plots for a run with queue and resource samples.
PLOT_IDS = ("plot-throughput", "plot-latency", "plot-queues", "plot-availability", "plot-cpu")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install chromium")


def chromium(tmp_path: Path, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with the flags that keep it off the network and quiet."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def console_errors(stderr: str) -> list[str]:
    """Lines Chromium logs for page console messages and uncaught exceptions."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_console_error_detection_catches_a_broken_page(tmp_path: Path) -> None:
    """Negative control: the stderr filter below really sees console errors on this Chromium."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><script>console.error("boom"); notDefined();</script></body></html>')
    result = chromium(tmp_path, "--dump-dom", url=page.as_uri())
    errors = console_errors(result.stderr)
    assert any("boom" in line for line in errors)
    assert any("Uncaught" in line for line in errors)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    write_synthetic_run(run, seconds=80, rate=15, faults=FAULTS, seed=11, resources=True)
    paths = write_all(audit_run(run), run / "audit", html=True)
    html = run / "audit" / rundir.REPORT_HTML
    assert html in paths
    return html


def test_report_html_is_self_contained(report_file: Path) -> None:
    text = report_file.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "url(" not in text and "@import" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') == len(PLOT_IDS)


def test_dom_has_the_verdict_and_an_image_per_plot(report_file: Path, tmp_path: Path) -> None:
    result = chromium(tmp_path, "--dump-dom", url=report_file.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert console_errors(result.stderr) == []
    assert re.search(r'<span class="badge">(PASS|FAIL)</span>', dom)
    assert "No accepted order was lost" in dom
    assert "across 2 faults" in dom
    for plot_id in PLOT_IDS:
        figure = re.search(rf'<figure id="{plot_id}">(.*?)</figure>', dom, re.S)
        assert figure is not None, plot_id
        assert re.search(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', figure.group(1))


def test_screenshot_shows_the_plots_without_console_errors(report_file: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url=report_file.as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_errors(result.stderr) == []
    assert shot.is_file() and shot.stat().st_size > 50_000, "screenshot missing or nearly blank"
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        rgb = image.convert("RGB")
        # Below the verdict and the figure cards the plots start (~y=500 at this width): a page whose
        # images failed to load is a few flat greys there; rendered plots (lines, shaded fault bands,
        # anti-aliased text) give hundreds of distinct colours.
        plot_area = rgb.crop((0, 500, WIDTH, HEIGHT))
        colours = plot_area.getcolors(maxcolors=1 << 20)
        assert colours is not None
        assert len(colours) > 300, f"only {len(colours)} distinct colours in the plot area"
        # The fault band colour (#f4a261 at 25 % on white ≈ (252, 231, 215)) is on screen.
        assert any(_near(c, (252, 231, 215)) for _, c in colours), "no shaded fault window visible"
    # Kept next to the report for a human to look at (the path is printed on failure, too).
    keep = report_file.with_name("report-screenshot.png")
    keep.write_bytes(shot.read_bytes())


def _near(colour: object, target: tuple[int, int, int], tol: int = 6) -> bool:
    if not isinstance(colour, tuple) or len(colour) != 3:
        return False
    return all(abs(int(a) - b) <= tol for a, b in zip(colour, target, strict=True))
