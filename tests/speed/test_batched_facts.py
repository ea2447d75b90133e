"""Facts in one command: the sectioned script run by a real shell, parsed back exactly."""

from __future__ import annotations

import subprocess

import pytest

from lab import facts

BOUNDARY = "@@labctl-0123456789abcdef"


def run_sections(sections: dict[str, str]) -> dict[str, facts.Section]:
    script = facts.sectioned_script(sections, BOUNDARY)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    return facts.parse_sections(out.stdout, BOUNDARY)


@pytest.mark.parametrize("text", ["", "one line\n", "no newline at the end", "\n\n", "a\n@@labctl-other:x\n"])
def test_file_text_comes_back_byte_for_byte(tmp_path, text):
    path = tmp_path / "file"
    path.write_text(text)
    found = run_sections({"file": facts.file_section(str(path))})
    assert facts.file_text(found["file"]) == text


def test_missing_file_is_none_not_empty(tmp_path):
    found = run_sections({"missing": facts.file_section(str(tmp_path / "nope"))})
    assert facts.file_text(found["missing"]) is None


def test_each_section_keeps_its_own_exit_status_and_order_of_effects(tmp_path):
    marker = tmp_path / "made"
    found = run_sections(
        {
            "first": f"touch {marker}",
            "fails": "exit_code() { return 7; }; exit_code",
            "sees first": f"test -e {marker} && printf yes",
        }
    )
    assert [found[name].exited for name in ("first", "fails", "sees first")] == [0, 7, 0]
    assert found["sees first"].text == "yes"


def test_an_unfinished_section_is_left_out():
    cut = f"{BOUNDARY}:done\nok\n{BOUNDARY}:exit:0\n{BOUNDARY}:cut\npartial"
    assert list(facts.parse_sections(cut, BOUNDARY)) == ["done"]
