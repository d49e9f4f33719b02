"""What telephony's jobs reach at run time: live state, rules, Twilio, URLs, the job queue.

The composition root (webhooks) installs it once per process, web or worker; telephony
code asks for it instead of reading settings or importing the web layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from routing_rules.schema import Rules

from .state import LiveState


class TelephonyContext(Protocol):
    state: LiveState

    @property
    def twilio(self) -> Any: ...

    def current_rules(self) -> Rules: ...

    def url(self, endpoint: str, **values: Any) -> str: ...

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None, **kwargs: Any) -> None: ...


_current: TelephonyContext | None = None


def install(context: TelephonyContext) -> None:
    global _current
    _current = context


def current() -> TelephonyContext:
    if _current is None:
        raise RuntimeError("telephony context not installed: start through `hotline` or create_app()")
    return _current
