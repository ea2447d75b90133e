from __future__ import annotations

import io
import json

from lab.result import CHANGED, FAILED, OK, PASSED, WOULD_CHANGE, HostReport, StepResult, outcome


def test_outcome():
    assert outcome(False, False) == OK
    assert outcome(False, True) == OK
    assert outcome(True, False) == CHANGED
    assert outcome(True, True) == WOULD_CHANGE


def test_line_has_host_prefix_status_and_detail():
    line = StepResult("lab-1", "timezone", CHANGED, "Etc/UTC -> Asia/Seoul").line(10)
    assert line == "[lab-1] timezone    changed: Etc/UTC -> Asia/Seoul"


def test_live_report_prints_each_line_and_summary_counts():
    out = io.StringIO()
    report = HostReport(live=out)
    report.add(StepResult("h", "a", OK))
    report.add(StepResult("h", "b", CHANGED, "x"))
    report.add(StepResult("h", "c", CHANGED, "y"))
    assert out.getvalue().count("\n") == 3
    assert report.ok
    assert report.summary() == "summary: 1 ok, 2 changed"
    assert [r.step for r in report.changed] == ["b", "c"]


def test_failure_makes_report_not_ok_and_json_carries_it():
    report = HostReport()
    report.add(StepResult("h", "tcp 12345", PASSED, "fine"))
    report.fail_host("h2", "SSH on 198.51.100.20:22 not ready")
    assert not report.ok
    data = json.loads(report.json())
    assert data["ok"] is False
    assert data["errors"] == {"h2": "SSH on 198.51.100.20:22 not ready"}
    assert data["results"][1] == {
        "host": "h2",
        "step": "error",
        "status": FAILED,
        "detail": "SSH on 198.51.100.20:22 not ready",
    }


def test_table_aligns_columns():
    report = HostReport()
    report.add(StepResult("lab-1", "ping", PASSED, "0% packet loss"))
    report.add(StepResult("lab-1", "tcp 12345", FAILED, "TCP 12345 timed out"))
    lines = report.table().splitlines()
    assert lines[0].split() == ["HOST", "CHECK", "RESULT", "DETAIL"]
    assert lines[2].startswith("lab-1  tcp 12345  FAILED  TCP 12345 timed out")
    assert lines[0].index("RESULT") == lines[1].index("PASS") == lines[2].index("FAILED")
    assert lines[-1] == "summary: 1 pass, 1 failed"


def test_korean_detail_survives_json():
    report = HostReport()
    report.add(StepResult("h", "nc", PASSED, "'안녕 싸피' echoed"))
    assert "안녕 싸피" in report.json()
