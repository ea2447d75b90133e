"""Speed tests reuse the host layer's sandbox host (one per test module, skipped without root)."""

from __future__ import annotations

from tests.lab.conftest import sandbox_host  # noqa: F401  (the fixture)
