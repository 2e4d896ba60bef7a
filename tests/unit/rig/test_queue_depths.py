"""The drill's queue-depth sampler: one line per queue and outbox per sample, and a failing sample never
stops it (a node killed or paused mid-sample is the normal case during a drill)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rig import queues as sampler_module
from rig.drain import Measurement
from rig.queues import QueueDepthSampler


def wait(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_samples_keep_coming_after_failures_and_only_watched_queues_are_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names_calls = []

    def names(urls: list[str], auth: tuple[str, str]) -> list[tuple[str, str]] | None:
        names_calls.append(1)
        return None if len(names_calls) == 1 else [("drill", "a"), ("drill", "a.retry.5s"), ("other", "b")]

    monkeypatch.setattr(sampler_module, "queue_names", names)
    asked: list[list[tuple[str, str]]] = []
    calls = 0

    def sample(
        mgmt: list[str],
        auth: tuple[str, str],
        amqp: list[str],
        outboxes: list[Path],
        watch: re.Pattern[str],
        skip: re.Pattern[str],
        queue_list: list[tuple[str, str]],
    ) -> Measurement:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("node 1 killed mid-sample")
        asked.append([q for q in queue_list if watch.search(f"{q[0]}/{q[1]}") and not skip.search(q[1])])
        return Measurement(float(calls), asked[-1], {"drill/a": calls}, {tmp_path / "x.db": 3})

    s = QueueDepthSampler(
        tmp_path, ["m"], ("u", "p"), ["a"], "drill", ignore=r"\.retry\.", interval_s=0.01, sample=sample
    )
    s.start()
    try:
        wait(lambda: s.samples >= 3, "three samples")
    finally:
        s.stop()
    assert not s._thread.is_alive()
    assert s.errors >= 2  # the management API that did not answer, the sample that raised
    assert asked[0] == [("drill", "a")]
    lines = [json.loads(x) for x in (tmp_path / "metrics" / "queues.jsonl").read_text().splitlines()]
    assert lines[:2] == [
        {"t": 1.0, "queue": "drill/a", "messages": 1},
        {"t": 1.0, "queue": "outbox:x.db", "messages": 3},
    ]
    assert {line["messages"] for line in lines if line["queue"] == "drill/a"} >= {1, 3}
