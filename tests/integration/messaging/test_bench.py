"""``drill bench messaging`` against the real cluster: both rates measured, the ratio printed last."""

from __future__ import annotations

import os

import pytest

from rig.cluster import Cluster
from system.messaging.bench import run_bench

from .conftest import settings_for

pytestmark = pytest.mark.integration


def test_bench_prints_both_rates_and_the_ratio_last(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    count = int(os.environ.get("DRILL_TEST_BENCH_COUNT", "3000"))
    result = run_bench(count=count, settings=settings_for(cluster))
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out)
    lines = out.strip().splitlines()
    assert lines[-1] == f"ratio ours/raw: {result.ratio:.2f}"
    assert result.raw_rate > 0 and result.ours_rate > 0
