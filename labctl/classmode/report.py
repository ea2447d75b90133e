"""The class report: one row per student, kept in the state dir as `class-<name>.json` and `.csv` (0600).

A row keeps the last run's outcome of every phase, so a re-run knows whom to retry. New columns go at the
end (`auto_stop` is the last so far); rows of an older report load with the new fields empty.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from labctl.state import state_dir

NOT_RUN = "not run"


@dataclass
class StudentRow:
    """One line of the class report."""

    student: str
    lab: str
    instance_id: str = ""
    address: str = ""
    key_file: str = ""
    ssh_command: str = ""
    cloud: str = NOT_RUN
    provision: str = NOT_RUN
    deploy: str = NOT_RUN
    verify: str = NOT_RUN
    error: str = ""
    finished_at: str = ""
    seconds: str = ""  # how long each phase took in the last run
    auto_stop: str = ""  # `--auto-stop`: the deadline and hours, `off`, or empty when never asked


def report_paths(class_name: str) -> tuple[Path, Path]:
    base = state_dir() / f"class-{class_name}"
    return base.with_suffix(".json"), base.with_suffix(".csv")


def load_rows(class_name: str) -> dict[str, StudentRow]:
    """The last report's rows by student id ({} when there is none or it is unreadable)."""
    path, _ = report_paths(class_name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    known = {f.name for f in fields(StudentRow)}
    rows = [StudentRow(**{k: v for k, v in row.items() if k in known}) for row in data.get("students", [])]
    return {row.student: row for row in rows}


def write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(class_name: str, target: str, region: str, rows: list[StudentRow]) -> tuple[Path, Path]:
    """Write the class report as JSON and CSV (0600); returns both paths."""
    json_path, csv_path = report_paths(class_name)
    data = {"class": class_name, "target": target, "region": region, "students": [asdict(r) for r in rows]}
    write_private(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(StudentRow)])
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    write_private(csv_path, buffer.getvalue())
    return json_path, csv_path


def report_table(rows: list[StudentRow]) -> str:
    """The report as an aligned table: student, instance, address, phases, ssh command, auto-stop, error."""
    auto_stop = any(r.auto_stop for r in rows)  # the AUTO-STOP column only once auto-stop was asked for
    head = (
        "STUDENT",
        "INSTANCE",
        "ADDRESS",
        "CLOUD",
        "PROVISION",
        "DEPLOY",
        "VERIFY",
        "SSH",
        *(("AUTO-STOP",) if auto_stop else ()),
        "ERROR",
    )
    table = [head] + [
        (
            r.student,
            r.instance_id or "-",
            r.address or "-",
            r.cloud,
            r.provision,
            r.deploy,
            r.verify,
            r.ssh_command or "-",
            *((r.auto_stop or "-",) if auto_stop else ()),
            r.error,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]).rstrip()
        for row in table
    )
