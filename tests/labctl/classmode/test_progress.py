"""The live progress display: redrawn in place on a terminal, appended lines otherwise."""

from __future__ import annotations

import io
import threading

from labctl.classmode.progress import DONE, FAILED, RUNNING, Progress

PHASES = ("cloud", "provision", "deploy", "verify")


class Terminal(io.StringIO):
    encoding = "utf-8"


def test_plain_output_appends_a_line_per_change():
    out = Terminal()
    progress = Progress(["s01", "s10"], PHASES, out, tty=False)
    progress.start()
    progress.set("s01", "cloud", RUNNING)
    progress.set("s01", "cloud", RUNNING)  # no change, no line
    progress.set("s01", "cloud", DONE)
    progress.set("s10", "cloud", FAILED)
    assert out.getvalue().splitlines() == [
        "s01  cloud …  provision  deploy  verify",
        "s01  cloud ✓  provision  deploy  verify",
        "s10  cloud ✗  provision  deploy  verify",
    ]
    assert "\x1b" not in out.getvalue()


def test_terminal_output_rewrites_the_block_in_place():
    out = Terminal()
    progress = Progress(["s01", "s02"], PHASES, out, tty=True)
    progress.start()
    progress.set("s02", "deploy", RUNNING)
    frames = out.getvalue().split("\x1b[2F")
    assert len(frames) == 2  # drawn once, then moved up two lines and redrawn
    assert frames[1] == (
        "\x1b[2Ks01  cloud  provision  deploy  verify\n\x1b[2Ks02  cloud  provision  deploy …  verify\n"
    )


def test_ascii_marks_when_the_output_cannot_encode_them():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    progress = Progress(["s01"], PHASES, out, tty=False)
    assert progress.line("s01") == "s01  cloud  provision  deploy  verify"
    progress.states["s01"]["cloud"] = DONE
    assert progress.line("s01") == "s01  cloud ok  provision  deploy  verify"


def test_updates_from_many_threads_keep_every_line_whole():
    out = Terminal()
    students = [f"s{n:02d}" for n in range(1, 21)]
    progress = Progress(students, PHASES, out, tty=False)
    threads = [
        threading.Thread(target=lambda s=s: [progress.set(s, p, DONE) for p in PHASES]) for s in students
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 * 4
    assert lines.count("s07  cloud ✓  provision ✓  deploy ✓  verify ✓") == 1
    assert all(line.startswith("s") and line.count("  ") == 4 for line in lines)
