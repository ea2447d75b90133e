"""Class mode's students: read from a CSV file (`--students FILE`) or numbered (`--count N`).

The CSV has a header row; `id` is required, `public_key` (OpenSSH public key text, or a path to a .pub
file) and `cidr` (the student's own source network, added to the rules of their lab) are optional.
Every problem is one LabError line naming the file and the line.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import LabError

COLUMNS = ("id", "public_key", "cidr")
MAX_COUNT = 200
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")


@dataclass(frozen=True)
class Student:
    """One student of the class: a lab-name-safe id, an optional public key and source CIDR."""

    id: str
    public_key: str | None = None  # OpenSSH public key text or a path to a .pub file
    cidr: str | None = None


def numbered_students(count: int) -> list[Student]:
    """`--count N`: students s01..sNN (three digits from 100 on)."""
    if not 1 <= count <= MAX_COUNT:
        raise LabError(f"--count {count} is out of range: give 1 to {MAX_COUNT} students")
    width = max(2, len(str(count)))
    return [Student(f"s{n:0{width}d}") for n in range(1, count + 1)]


def read_students(path: str | Path) -> list[Student]:
    """`--students FILE`: the students of a CSV file, checked line by line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise LabError(f"cannot read --students {path}: {reason}") from None
    rows = list(csv.reader(text.splitlines()))
    header = _check_header(path, rows)
    students = [
        _student(path, number, dict(zip(header, _padded(row, len(header)))))
        for number, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)
    ]
    if not students:
        raise LabError(f"--students {path} lists no students: add one `id` per line under the header")
    _check_unique(path, students)
    return students


def _padded(row: list[str], width: int) -> list[str]:
    return [cell.strip() for cell in row] + [""] * (width - len(row))


def _check_header(path: Path, rows: list[list[str]]) -> list[str]:
    if not rows:
        raise LabError(f"--students {path} is empty: write the header `id,public_key,cidr`, one per line")
    header = [cell.strip().lower() for cell in rows[0]]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise LabError(
            f"--students {path}: unknown column {unknown[0]!r} in the header; "
            f"use {', '.join(COLUMNS)} (id required)"
        )
    if "id" not in header:
        raise LabError(f"--students {path}: the header has no `id` column (columns: {', '.join(COLUMNS)})")
    return header


def _student(path: Path, line: int, row: dict[str, str]) -> Student:
    where = f"--students {path} line {line}"
    student_id = row.get("id", "")
    if not _STUDENT_ID.match(student_id):
        raise LabError(
            f"{where}: student id {student_id!r} is not lab-name safe; "
            "use letters, digits, '-' or '_', starting with a letter or digit"
        )
    return Student(
        id=student_id,
        public_key=_public_key(where, row.get("public_key") or None),
        cidr=_cidr(where, row.get("cidr") or None),
    )


def _public_key(where: str, value: str | None) -> str | None:
    if value is None or value.startswith(_KEY_PREFIXES):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise LabError(
            f"{where}: public_key {value!r} is neither an OpenSSH public key (ssh-ed25519 ...) nor a file"
        )
    return str(path.resolve())


def _cidr(where: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise LabError(f"{where}: cidr {value!r} is not an IPv4 network like A.B.C.D/32") from None
    if network.version != 4:
        raise LabError(f"{where}: cidr {value!r} is IPv6; the lab's rules are IPv4")
    return str(network)


def _check_unique(path: Path, students: list[Student]) -> None:
    seen: set[str] = set()
    for student in students:
        key = student.id.lower()
        if key in seen:
            raise LabError(f"--students {path}: student id {student.id!r} appears twice; ids must be unique")
        seen.add(key)
