"""Report lines and the tasks' error decorator: one plain line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest

from infra.results import CHANGED, CREATED, OK, Result
from labctl.errors import LabError
from labctl.output import format_result, header, reports_lab_errors, summary_line


def test_header_names_target_region_and_lab():
    assert header("teardown", "sandbox", "ap-northeast-2", "netlab") == (
        "teardown: target sandbox, region ap-northeast-2, lab netlab"
    )


def test_planned_results_read_as_would():
    assert format_result(Result(CREATED, "key pair k", planned=True)).split() == [
        "would",
        "create",
        "key",
        "pair",
        "k",
    ]
    assert format_result(Result(OK, "instance i-1", "running")).split() == [
        "ok",
        "instance",
        "i-1:",
        "running",
    ]


def test_summary_says_nothing_to_do_only_without_changes():
    assert summary_line([Result(OK, "a")]).startswith("nothing to do")
    assert summary_line([Result(OK, "a"), Result(CHANGED, "b")]) == "done"
    assert summary_line([Result(CHANGED, "b", planned=True)], planned=True).startswith("plan:")


def test_lab_error_becomes_one_line_on_stderr_and_exit_1(capsys):
    @reports_lab_errors
    def task(c):
        raise LabError("no default VPC in ap-northeast-2: create one")

    with pytest.raises(SystemExit) as leaving:
        task(None)
    assert leaving.value.code == 1
    captured = capsys.readouterr()
    assert captured.err == "error: no default VPC in ap-northeast-2: create one\n"
    assert "\x1b[" not in captured.err


def test_ctrl_c_becomes_one_line_and_exit_130(capsys):
    @reports_lab_errors
    def task(c):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as leaving:
        task(None)
    assert leaving.value.code == 130
    assert capsys.readouterr().err.count("\n") == 1


def test_decorator_keeps_the_signature_invoke_reads():
    import inspect

    @reports_lab_errors
    def task(c, region=None, keep_key=False):
        """Summary line."""

    assert list(inspect.signature(task).parameters) == ["c", "region", "keep_key"]
    assert task.__doc__ == "Summary line."
