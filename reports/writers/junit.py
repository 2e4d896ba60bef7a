"""junit.xml: one ``<testcase>`` per check, so CI shows each invariant as its own test.

A broken promise (a ``failed`` check: the platform's fault) carries a ``<failure>``; harness trouble (an
``error`` check: a fault not applied or undone, the traffic generator crashed — the run is INCONCLUSIVE)
carries an ``<error>``, so CI can tell "the release broke" from "rerun it". Each body is the check's
message, its counts and sample ids; skipped checks carry ``<skipped>`` (or a ``<failure>`` under
``--strict``). The suite and the classname carry the scenario's name (``drill.<name>``), so two drills
in one CI job do not collide.
Ids come from the outside world (order refs, webhook bodies), so characters XML 1.0 forbids are
replaced: ElementTree would otherwise write them verbatim and produce a file no parser accepts.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from reports.audit import SCHEMA_VERSION, AuditReport
from reports.checks import CheckResult
from reports.writers._atomic import write_text_atomic

#: Prefix of the suite and class names; the run's scenario name follows (``drill.demo``).
PREFIX = "drill"
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def check_text(check: CheckResult) -> str:
    """The body of a failure / system-out: counts, then sample ids per category."""
    lines = [check.message, ""]
    lines += [f"{k} = {v}" for k, v in check.counts.items()]
    for name, ids in check.samples.items():
        lines.append(f"sample {name}: {', '.join(ids)}")
    for name, value in check.details.items():
        if value:
            lines.append(f"{name}: {value}")
    return _clean("\n".join(lines))


def junit_tree(report: AuditReport) -> ET.ElementTree[ET.Element]:
    """The JUnit document as an ElementTree (exposed for tests and for embedding)."""
    checks = report.checks
    failed = sum(c.status == "failed" or (report.strict and c.status == "skipped") for c in checks)
    errors = sum(c.status == "error" for c in checks)
    skipped = 0 if report.strict else sum(c.status == "skipped" for c in checks)
    classname = _clean(f"{PREFIX}.{report.name}")
    attrs = {
        "name": classname,
        "tests": str(len(checks)),
        "failures": str(failed),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": f"{report.seconds:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(
        root, "testsuite", {**attrs, "timestamp": report.generated_at, "hostname": socket.gethostname()}
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_dir", report.run_dir),
        ("schema_version", str(SCHEMA_VERSION)),
        ("outcome", report.outcome.value),
        ("exit_code", str(report.exit_code)),
    ):
        ET.SubElement(props, "property", {"name": name, "value": _clean(value)})
    for check in checks:
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": _clean(check.name), "time": "0"}
        )
        body = check_text(check)
        if check.status == "error":
            error = ET.SubElement(
                case, "error", {"message": _clean("harness: " + check.message), "type": "HarnessError"}
            )
            error.text = body
        elif check.status == "failed" or (report.strict and check.status == "skipped"):
            prefix = "" if check.status == "failed" else "skipped under --strict: "
            failure = ET.SubElement(
                case, "failure", {"message": _clean(prefix + check.message), "type": "AuditFailure"}
            )
            failure.text = body
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", {"message": _clean(check.message)})
        else:
            ET.SubElement(case, "system-out").text = body
    ET.indent(root)
    return ET.ElementTree(root)


def junit_xml(report: AuditReport) -> str:
    """The JUnit document as text, with an XML declaration."""
    body = ET.tostring(junit_tree(report).getroot(), encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def write_junit(report: AuditReport, path: Path) -> None:
    """Write junit.xml."""
    write_text_atomic(path, junit_xml(report))
