"""A run's verdict as JUnit XML (`junit.xml` in the run folder), the format CI systems read:
one test case per invariant (held, BROKEN with its counterexamples, or skipped when not
checked), one per threshold (met or missed), and one error per harness or server failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from loadtests.checker.base import Report
from loadtests.checker.report import render
from loadtests.thresholds import Verdict


def _suite(root: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name)


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attr, str(sum(c.find(tag) is not None for c in cases)))


def junit_xml(run: str, report: Report | None, verdicts: Sequence[Verdict],
              failures: Sequence[str] = ()) -> ET.ElementTree:
    """The verdict of run `run` (a name: the scenario and the run folder) as JUnit XML."""
    root = ET.Element("testsuites", name=run)
    inv = _suite(root, "invariants")
    for r in report.results if report is not None else []:
        case = ET.SubElement(inv, "testcase", classname="invariants", name=r.name)
        if r.skipped:
            ET.SubElement(case, "skipped", message=r.skipped)
        elif not r.held:
            fail = ET.SubElement(case, "failure", type="invariant",
                                 message=f"{r.violations} violation(s): {r.description}")
            fail.text = "\n".join(render(f) for f in r.findings)
        else:
            ET.SubElement(case, "system-out").text = (
                f"{r.description} ({r.checked} checked{', ' + r.note if r.note else ''})")
    thr = _suite(root, "thresholds")
    for v in verdicts:
        case = ET.SubElement(thr, "testcase", classname="thresholds", name=v.name)
        if not v.passed:
            ET.SubElement(case, "failure", type="threshold", message=v.line)
        else:
            ET.SubElement(case, "system-out").text = v.line
    harness = _suite(root, "harness")
    for i, line in enumerate(failures, 1):
        case = ET.SubElement(harness, "testcase", classname="harness", name=f"problem {i}")
        ET.SubElement(case, "error", type="harness", message=line)
    if not failures:
        ET.SubElement(harness, "testcase", classname="harness", name="run completed")
    for suite in root.findall("testsuite"):
        _count(suite)
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root.findall("testsuite"))))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, run: str, report: Report | None, verdicts: Sequence[Verdict],
                failures: Sequence[str] = ()) -> Path:
    junit_xml(run, report, verdicts, failures).write(path, encoding="utf-8",
                                                      xml_declaration=True)
    return path
