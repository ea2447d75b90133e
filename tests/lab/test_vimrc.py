from __future__ import annotations

import pytest

from lab.vimrc import REQUIRED_LINES, merge_vimrc, missing_lines

ALL = "".join(line + "\n" for line in REQUIRED_LINES)


@pytest.mark.parametrize(
    "before, after",
    [
        ("", ALL),
        (ALL, ALL),
        ("syntax on\n", "syntax on\n" + ALL),
        ("syntax on", "syntax on\n" + ALL),
        ("set nu\nset ts=8\n", "set nu\nset ts=8\nset ts=4\nset sw=4\nset ls=2\n"),
        ("  set nu  \nset sw=4\n", "  set nu  \nset sw=4\nset ts=4\nset ls=2\n"),
        ('" set nu in a comment\n', '" set nu in a comment\n' + ALL),
    ],
)
def test_merge_keeps_user_lines_and_appends_missing(before, after):
    assert merge_vimrc(before) == after


@pytest.mark.parametrize("text", ["", "set nu\n", "syntax on\nset ts=2\n", ALL])
def test_merge_is_idempotent(text):
    once = merge_vimrc(text)
    assert merge_vimrc(once) == once
    assert missing_lines(once) == []


def test_missing_lines_in_order():
    assert missing_lines("set sw=4\n") == ["set nu", "set ts=4", "set ls=2"]
