"""One checked fact and its verdict: what `inv doctor` and the preflight before a paid job print, a line each."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""
