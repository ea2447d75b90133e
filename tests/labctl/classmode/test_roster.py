"""--students CSV and --count: good files parse, every bad file is one clear LabError line."""

from __future__ import annotations

import pytest

from labctl.classmode.roster import Student, numbered_students, read_students
from labctl.errors import LabError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDn1j3UxZ3m0gdB9JNKcAbq6NqYmkV5Mqp5Y2PKn4VLZ student@laptop"


def write(tmp_path, text: str):
    path = tmp_path / "students.csv"
    path.write_text(text)
    return path


def test_count_numbers_students_with_two_digits_then_three():
    assert [s.id for s in numbered_students(3)] == ["s01", "s02", "s03"]
    assert numbered_students(120)[-1].id == "s120"


@pytest.mark.parametrize("count", [0, -1, 201])
def test_count_out_of_range(count):
    with pytest.raises(LabError, match="--count .* out of range"):
        numbered_students(count)


def test_csv_with_optional_columns(tmp_path):
    pub = tmp_path / "kim.pub"
    pub.write_text(KEY + "\n")
    path = write(tmp_path, f'id,public_key,cidr\nlee,,\nkim,{pub},\npark,"{KEY}",198.51.100.77/32\n\n')
    assert read_students(path) == [
        Student("lee"),
        Student("kim", public_key=str(pub.resolve())),
        Student("park", public_key=KEY, cidr="198.51.100.77/32"),
    ]


def test_columns_in_any_order_and_only_id(tmp_path):
    assert read_students(write(tmp_path, "cidr,id\n10.1.2.3/32,a1\n")) == [Student("a1", cidr="10.1.2.3/32")]
    assert read_students(write(tmp_path, "id\nx\ny\n")) == [Student("x"), Student("y")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("id\n", "lists no students"),
        ("name\nlee\n", "unknown column 'name'"),
        ("cidr\n10.0.0.0/8\n", "no `id` column"),
        ("id\nlee kim\n", "line 2: student id 'lee kim' is not lab-name safe"),
        ("id\n-lee\n", "line 2: student id '-lee' is not lab-name safe"),
        ("id,cidr\nlee,10.0.0.300/32\n", "line 2: cidr '10.0.0.300/32' is not an IPv4 network"),
        ("id,cidr\nlee,2001:db8::/64\n", "line 2: cidr '2001:db8::/64' is IPv6"),
        ("id,public_key\nlee,/no/such/key.pub\n", "line 2: public_key '/no/such/key.pub' is neither"),
        ("id\nlee\nkim\nLee\n", "'Lee' appears twice"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(LabError) as error:
        read_students(write(tmp_path, text))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(LabError, match="cannot read --students .*missing.csv: No such file"):
        read_students(tmp_path / "missing.csv")
