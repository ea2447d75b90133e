"""Ctrl-C in class mode, in-process: a real SIGINT to the main thread while one student's cloud part waits
(in-process moto, --cloud-only), and a cancel while a student's SSH command runs (a private sshd on
loopback, root only). Nothing new starts, the running student stops at once, the report marks it, the
error names what exists, and the next run converges.
"""

from __future__ import annotations

import io
import signal
import threading
import time

import pytest

from infra.tags import STUDENT_KEY
from lab.result import HostReport
from labctl.classmode import classroom, shared
from labctl.classmode.cancel import CancelScope, run_on_host
from labctl.classmode.report import StudentRow, load_rows
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.errors import LabInterrupted
from labctl.options import ProvisionOptions
from tests.support.classmode import ours

from .conftest import TEST_CIDR

CLASS = "netlab"
STUDENTS = (Student("s01"), Student("s02"), Student("s03"))


def provision(out: io.StringIO, parallel: int = 1) -> list[StudentRow]:
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS)
    return classroom.provision_class(options, ClassOptions(STUDENTS, parallel=parallel), out=out, tty=False)


def sigint_main_thread_once(ready: threading.Event) -> threading.Thread:
    """SIGINT to this process's main thread once `ready` is set (as Ctrl-C in a terminal would)."""
    main = threading.main_thread().ident

    def send() -> None:
        if ready.wait(30):
            signal.pthread_kill(main, signal.SIGINT)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def test_sigint_stops_the_class_marks_the_students_and_a_rerun_converges(ec2, monkeypatch):
    waiting, release = threading.Event(), threading.Event()
    real_cloud_part = classroom.cloud_part

    def s02_waits(run, student):
        if student.id == "s02":
            waiting.set()
            release.wait(60)
            raise RuntimeError("released after the interrupt")
        return real_cloud_part(run, student)

    monkeypatch.setattr(classroom, "cloud_part", s02_waits)
    sigint_main_thread_once(waiting)
    out = io.StringIO()
    try:
        with pytest.raises(LabInterrupted) as stopped:
            provision(out)
    finally:
        release.set()
    message = str(stopped.value)
    assert "\n" not in message
    launched = [t["Value"] for i in ours(ec2, "instances") for t in i["Tags"] if t["Key"] == STUDENT_KEY]
    assert launched == ["s01"]  # s03 was never launched
    instance = ours(ec2, "instances")[0]["InstanceId"]
    assert message.startswith(
        f"class {CLASS} interrupted; s01 (finished): instance {instance} (running), security group sg-"
    )
    assert "labctl-netlab-s01; s02 (interrupted in cloud): nothing; s03 (not started): nothing" in message
    assert message.endswith(
        "Re-run the same `fab provision` to converge, or `fab teardown` to remove the class"
    )
    rows = load_rows(CLASS)
    assert rows["s02"].cloud == "interrupted" and rows["s02"].error.startswith("cloud: interrupted")
    assert rows["s03"].cloud == "not run" and rows["s03"].error == "not started: interrupted (Ctrl-C)"
    assert rows["s01"].cloud == "done" and rows["s01"].error == ""
    assert "STUDENT" in out.getvalue()  # the table was printed before the error

    monkeypatch.setattr(classroom, "cloud_part", real_cloud_part)
    again = provision(io.StringIO(), parallel=3)
    assert {row.cloud for row in again} == {"done"} and not any(row.error for row in again)
    assert len(ours(ec2, "instances")) == 3


def wait_for_file(path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.root
def test_cancel_closes_the_connection_of_a_running_command_and_no_command_follows(sshd, tmp_path):
    from tests.support.local_sshd import target_for

    target = target_for(sshd, [(sshd.host_key_type, sshd.host_key_b64)])
    scope = CancelScope()
    started, outputs = tmp_path / "started", []

    def job(host) -> None:  # the first command runs until the test removes `started`
        waits = f"touch {started}; while [ -e {started} ]; do sleep 0.1; done; echo finished"
        outputs.append(host.run(waits))
        outputs.append(host.run("echo a second command"))

    report = HostReport()
    worker = threading.Thread(target=run_on_host, args=(target, job, report, scope), daemon=True)
    worker.start()
    try:
        wait_for_file(started)
        scope.cancel()
        worker.join(60)
        assert not worker.is_alive()
        assert [o.stdout for o in outputs] == [""]  # cut short while still waiting; no second command ran
        assert report.errors == {"local": "interrupted (Ctrl-C): the SSH connection was closed"}
    finally:
        started.unlink(missing_ok=True)  # ends the remote loop


@pytest.mark.root
def test_a_connection_opened_after_the_cancel_is_closed_at_once(sshd):
    from tests.support.local_sshd import target_for

    target = target_for(sshd, [(sshd.host_key_type, sshd.host_key_b64)])
    scope = CancelScope()
    scope.cancel()
    ran = []
    report = run_on_host(target, ran.append, HostReport(), scope)
    assert ran == [] and report.errors == {"local": "interrupted (Ctrl-C)"}


def test_ctrl_c_before_any_student_started_marks_them_all_not_started(ec2, monkeypatch):
    def interrupted_while_checking_inputs(*args, **kwargs):
        raise KeyboardInterrupt  # as Ctrl-C during the image look-up would

    monkeypatch.setattr(shared, "class_inputs", interrupted_while_checking_inputs)
    with pytest.raises(LabInterrupted) as stopped:
        provision(io.StringIO())
    assert "s01 (not started): nothing; s02 (not started): nothing; s03 (not started): nothing" in str(
        stopped.value
    )
    rows = load_rows(CLASS)
    assert {row.error for row in rows.values()} == {"not started: interrupted (Ctrl-C)"}
