"""What telephony's jobs reach at run time: live state, rules, Twilio, URLs, the job queue.

The composition root (webhooks) installs it once per process, web or worker; telephony
code asks for it instead of reading settings or importing the web layer.
"""

from __future__ import annotations

import re
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
_NOT_IN_JOB_IDS = re.compile(r"[^A-Za-z0-9_-]")


def job_id(queue_name: str, name: str) -> str:
    """The id of job `name` (one of a kind: a call's complaint, a scheduler slot) in this
    hotline's queue. RQ keeps a job under its id alone (`rq:job:<id>`), whatever its queue, so
    two hotlines sharing a Redis (each with its own HOTLINE_JOB_QUEUE) would overwrite each
    other's jobs of the same name and run them in the wrong hotline. RQ allows letters, digits,
    '_' and '-' in an id: the queue's other characters become '_'."""
    return f"{_NOT_IN_JOB_IDS.sub('_', queue_name)}--{name}"


def install(context: TelephonyContext) -> None:
    global _current
    _current = context


def current() -> TelephonyContext:
    if _current is None:
        raise RuntimeError("telephony context not installed: start through `hotline` or create_app()")
    return _current
