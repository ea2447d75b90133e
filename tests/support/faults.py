"""Interrupt a cloud task at its Nth AWS API call, the way Ctrl-C would land there.

"before" interrupts before the request is sent (the call never happened); "after" interrupts once the
response has arrived but before the caller sees it (the call happened, the task does not know).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from infra import session


@dataclass
class CallInterrupter:
    """Counts the API calls of every client labctl creates; raises KeyboardInterrupt at call `at`."""

    at: int | None = None
    when: str = "before"
    calls: list[str] = field(default_factory=list)

    def before_call(self, event_name: str, **kwargs) -> None:
        self.calls.append(event_name.split(".", 1)[1])
        if self.when == "before" and self.at is not None and len(self.calls) == self.at:
            raise KeyboardInterrupt

    def after_call(self, **kwargs) -> None:
        if self.when == "after" and self.at is not None and len(self.calls) == self.at:
            raise KeyboardInterrupt

    @property
    def interrupted_call(self) -> str:
        return self.calls[self.at - 1] if self.at else ""


@contextmanager
def interrupting(monkeypatch, at: int | None = None, when: str = "before"):
    """Hook the clients made by infra.session.client; `at=None` only counts the calls."""
    interrupter = CallInterrupter(at, when)
    real_client = session.client

    def hooked_client(aws_session, service, endpoint_url=None):
        client = real_client(aws_session, service, endpoint_url)
        client.meta.events.register("before-call", interrupter.before_call)
        client.meta.events.register("after-call", interrupter.after_call)
        return client

    with monkeypatch.context() as patch:
        patch.setattr(session, "client", hooked_client)
        yield interrupter
