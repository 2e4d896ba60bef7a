"""Writers: junit.xml parses and has one test case per check, report.json, summary.md."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import rundir
from reports.audit import SCHEMA_VERSION, AuditConfig, AuditReport, audit_collected
from reports.ops import Collector
from reports.readers import SourceStats
from reports.writers import write_all


def rec(kind: str, id_: str, flow: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "id": id_, "flow": flow, **extra}


def make_report(*records: dict[str, Any], strict: bool = False) -> AuditReport:
    collector = Collector()
    collector.add_records(records)
    source = SourceStats(source="mem", reader="test", records=len(records), ops=len(records))
    return audit_collected(collector, [source], AuditConfig(strict=strict), run_dir="/runs/r1")


FAILING = (
    rec("attempt", "o-lost"),
    rec("ack", "o-lost"),
    rec("attempt", "o-ok", t=100.0),
    rec("ack", "o-ok"),
    rec("observe", "o-ok", t=160.0),
    rec("attempt", "o-parked"),
    rec("ack", "o-parked"),
    rec("parked", "o-parked", reason="no_courier"),
)


def parse_junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root


def test_junit_has_one_testcase_per_check_and_failures_on_failed_ones(tmp_path: Path) -> None:
    report = make_report(*FAILING)
    write_all(report, tmp_path)
    root = parse_junit(tmp_path / rundir.JUNIT_XML)
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == [c.name for c in report.checks]
    by_name = {c.get("name"): c for c in cases}
    for check in report.checks:
        case = by_name[check.name]
        failures = case.findall("failure")
        skipped = case.findall("skipped")
        assert len(failures) == (check.status == "failed"), check.name
        assert len(skipped) == (check.status == "skipped"), check.name
    lost = by_name["total_queue[orders]"].find("failure")
    assert lost is not None
    assert "lost=1" in (lost.get("message") or "")
    assert "sample lost: o-lost" in (lost.text or "")
    assert "lost = 1" in (lost.text or "")
    failed = sum(c.status == "failed" for c in report.checks)
    assert suites[0].get("failures") == root.get("failures") == str(failed)
    assert suites[0].get("tests") == str(len(report.checks))
    assert failed >= 2


def test_junit_strict_turns_skips_into_failures(tmp_path: Path) -> None:
    report = make_report(*FAILING[2:5], strict=True)
    write_all(report, tmp_path)
    root = parse_junit(tmp_path / rundir.JUNIT_XML)
    assert root.findall(".//skipped") == []
    messages = [f.get("message") or "" for f in root.iter("failure")]
    assert messages
    assert all(m.startswith("skipped under --strict") for m in messages)
    assert report.exit_code == 1


def test_junit_survives_ids_with_characters_xml_forbids(tmp_path: Path) -> None:
    report = make_report(rec("ack", "bad\x00id\x1b<&>"), rec("observe", "ok\x07"))
    write_all(report, tmp_path)
    text = (tmp_path / rundir.JUNIT_XML).read_text()
    root = parse_junit(tmp_path / rundir.JUNIT_XML)
    assert "\x00" not in text
    body = "".join(f.text or "" for f in root.iter("failure"))
    assert "bad\ufffdid\ufffd<&>" in body


def test_report_json_carries_schema_version_counts_and_checks(tmp_path: Path) -> None:
    report = make_report(*FAILING)
    write_all(report, tmp_path)
    doc = json.loads((tmp_path / rundir.REPORT_JSON).read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == 3
    assert (doc["verdict"], doc["exit_code"], doc["valid"]) == ("FAIL", 1, False)
    assert doc["flows"]["orders"]["counts"]["lost"] == 1
    assert doc["flows"]["orders"]["samples"]["lost"] == ["o-lost"]
    assert doc["parked_reasons"] == {"no_courier": 1}
    assert doc["totals"]["acknowledged"] == 3
    assert doc["span"] == {"t_min": 100.0, "t_max": 160.0}
    assert [c["name"] for c in doc["checks"]] == [c.name for c in report.checks]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_summary_md_shows_verdict_checks_flows_and_reasons(tmp_path: Path) -> None:
    report = make_report(*FAILING)
    write_all(report, tmp_path)
    text = (tmp_path / rundir.SUMMARY_MD).read_text()
    assert text.startswith("# audit: FAIL\n")
    assert report.verdict_line() in text
    assert "| total_queue[orders] | ❌ failed |" in text
    assert "| no_courier | 1 |" in text
    assert "**orders** · lost: `o-lost`" in text
    assert "(60.0 s)" in text


@pytest.mark.parametrize(("records", "word"), [(FAILING, "FAIL"), (FAILING[2:5], "PASS")])
def test_verdict_line(records: tuple[dict[str, Any], ...], word: str) -> None:
    line = make_report(*records).verdict_line()
    assert line.startswith(f"VERDICT: {word} lost=")
    assert ("lost=1 " in line) == (word == "FAIL")
    assert "unexpected=0 duplicated_effects=0" in line


def test_the_broker_a_drill_ran_on_is_in_every_report(tmp_path: Path) -> None:
    from reports.audit import run_broker

    assert run_broker(tmp_path) is None  # no drill.json: an audit of a directory, not a drill
    (tmp_path / rundir.DRILL).write_text(
        json.dumps(
            {"scenario": "demo", "cluster": {"provider": "local", "broker": "4.0", "broker_version": "4.0.5"}}
        )
    )
    assert run_broker(tmp_path) == "RabbitMQ 4.0.5 (broker 4.0)"
    report = make_report(*FAILING[2:5])
    report.broker = run_broker(tmp_path)
    write_all(report, tmp_path, html=True)
    assert json.loads((tmp_path / rundir.REPORT_JSON).read_text())["broker"] == "RabbitMQ 4.0.5 (broker 4.0)"
    assert "Broker: RabbitMQ 4.0.5 (broker 4.0)" in (tmp_path / rundir.SUMMARY_MD).read_text()
    assert (
        '<div class="meta" id="broker">Broker: RabbitMQ 4.0.5 (broker 4.0)</div>'
        in (tmp_path / rundir.REPORT_HTML).read_text()
    )
    (tmp_path / rundir.DRILL).write_text(json.dumps({"cluster": {"provider": "external", "broker": None}}))
    assert run_broker(tmp_path) is None
