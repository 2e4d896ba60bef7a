"""The proxy bench runs end to end and reports both paths and the ratios (tiny sizes: fast)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from typer.testing import CliRunner

from chaos.toxiproxy import launch
from chaos.toxiproxy.bench import bench_proxy, main
from chaos.toxiproxy.cli import app

# Real sockets and processes, no broker: the cluster fixture is not used.
pytestmark = pytest.mark.integration


def test_bench_proxy_measures_both_paths() -> None:
    result = bench_proxy(rounds=200, stream_mb=2, repeats=2, mode="thread")
    for figures in (result.direct, result.proxied):
        assert 0 < figures.rtt_p50_ms <= figures.rtt_p99_ms
        assert figures.throughput_mb_s > 0
        assert figures.amqp_publish_msg_s is None
    assert result.throughput_ratio == pytest.approx(
        result.proxied.throughput_mb_s / result.direct.throughput_mb_s
    )
    assert result.lines()[-1].startswith("throughput ratio proxied/direct: ")


def test_bench_main_prints_the_throughput_ratio_last(capsys: pytest.CaptureFixture[str]) -> None:
    with launch(binary=None, mode="thread") as handle:
        main(["--rounds", "100", "--stream-mb", "1", "--repeats", "1", "--api-url", handle.url])
        # The bench cleans up after itself on a server it did not start.
        with urllib.request.urlopen(f"{handle.url}/proxies") as resp:
            assert resp.read() == b"{}"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("direct ")
    assert lines[1].startswith("proxied ")
    ratio = float(lines[-1].rsplit(":", 1)[1])
    assert ratio > 0


def test_typer_bench_command() -> None:
    args = ["bench", "--rounds", "50", "--stream-mb", "1", "--repeats", "1", "--mode", "thread", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert json.loads(lines[0])["throughput_ratio"] > 0
    assert lines[-1].startswith("throughput ratio proxied/direct: ")
