"""~/.vimrc: the course's four settings, the user's other lines kept."""

from __future__ import annotations

from lab.remote import Host
from lab.result import outcome

VIMRC = "~/.vimrc"
REQUIRED_LINES = ("set nu", "set ts=4", "set sw=4", "set ls=2")


def missing_lines(text: str) -> list[str]:
    """Required settings not present as a line of their own (surrounding blanks ignored)."""
    present = {line.strip() for line in text.splitlines()}
    return [line for line in REQUIRED_LINES if line not in present]


def merge_vimrc(text: str) -> str:
    """`text` with the missing required lines appended (pure; later lines win in vim)."""
    missing = missing_lines(text)
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(line + "\n" for line in missing)


def vimrc(host: Host, text: str | None) -> None:
    """Step 5: make ~/.vimrc contain the required settings (`text`: its current content, None if missing)."""
    current = text or ""
    missing = missing_lines(current)
    status = outcome(bool(missing), host.dry_run)
    if missing and not host.dry_run:
        host.write_file(VIMRC, merge_vimrc(current), mode="0644")
    verb = "would append" if host.dry_run else "appended"
    detail = f"{verb} {', '.join(missing)}" if missing else "has " + ", ".join(REQUIRED_LINES)
    host.record(".vimrc", status, detail)
