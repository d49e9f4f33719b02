"""Simulated people: callers follow a script, agents and callees answer after k rings.

Scripts are plain lists of one-key dicts so YAML scenarios and tests read alike:
`[{press: "1"}, {wait: 20}, {speak: "billing"}, {record: 12}, {hang_up: true},
{hang_up_after: 90}]`. `hang_up_after` is a standing deadline (seconds after the call starts),
not a step; the other actions are consumed in order by the verb that is listening.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RING_SECONDS = 5.0  # EE/PL/RU/DE cadence: 1 s on, 4 s off
DEFAULT_TALK_SECONDS = 30.0  # a bridged call's length when nobody scripted a hang-up
KEY_SECONDS = 0.3  # time to press one key


class ScriptError(ValueError):
    """A script action the simulator does not understand."""


_ACTIONS = {"press", "wait", "speak", "record", "hang_up", "hang_up_after"}


@dataclass
class Action:
    kind: str
    value: Any


class CallerScript:
    """The caller's remaining actions; one call's thread consumes it, so no locking."""

    def __init__(self, actions: Sequence[Mapping[str, Any] | str] | None = None) -> None:
        self.hang_up_after: float | None = None
        self.actions: list[Action] = []
        for raw in actions or ():
            if isinstance(raw, str):
                raw = {raw: True}
            if len(raw) != 1:
                raise ScriptError(f"one action per step, got {dict(raw)!r}")
            ((kind, value),) = raw.items()
            if kind not in _ACTIONS:
                raise ScriptError(f"unknown caller action {kind!r}; known: {sorted(_ACTIONS)}")
            if kind == "hang_up_after":
                self.hang_up_after = float(value)
            elif kind == "press":
                self.actions.append(Action(kind, str(value)))
            else:
                self.actions.append(Action(kind, value))

    def peek(self) -> Action | None:
        return self.actions[0] if self.actions else None

    def pop(self) -> Action | None:
        return self.actions.pop(0) if self.actions else None

    def __bool__(self) -> bool:
        return bool(self.actions)


@dataclass
class AgentBehaviour:
    """How an endpoint reacts when it rings.

    outcome: answer | busy | never | fail. An answering endpoint picks up after
    `answer_after_rings` × ring seconds; it talks `hang_up_after` seconds once bridged and
    presses `press` at a whisper `<Gather>`. `script` drives an outbound call it answers.
    """

    outcome: str = "answer"
    answer_after_rings: int = 1
    ring_seconds: float | None = None
    hang_up_after: float | None = None
    press: str | None = None
    name: str | None = None
    script: list[Any] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: AgentBehaviour | Mapping[str, Any] | str | int | None) -> AgentBehaviour:
        if isinstance(raw, AgentBehaviour):
            return raw
        if raw is None:
            return cls()
        if isinstance(raw, int):
            return cls(answer_after_rings=raw)
        if isinstance(raw, str):
            if raw not in {"answer", "busy", "never", "fail"}:
                raise ScriptError(f"unknown agent behaviour {raw!r}")
            return cls(outcome=raw)
        data = dict(raw)
        outcome = "answer"
        for flag in ("busy", "never", "fail"):
            if data.pop(flag, False):
                outcome = flag
        outcome = str(data.pop("outcome", outcome))
        known = {"answer_after_rings", "ring_seconds", "hang_up_after", "press", "name", "script"}
        unknown = set(data) - known
        if unknown:
            raise ScriptError(f"unknown agent keys {sorted(unknown)}")
        if "press" in data and data["press"] is not None:
            data["press"] = str(data["press"])
        return cls(outcome=outcome, **data)

    def callee_script(self) -> CallerScript:
        """The script this party follows on a call it answered (whisper or outbound)."""
        actions: list[Any] = list(self.script)
        if not actions and self.press:
            actions = [{"press": self.press}]
        if self.hang_up_after is not None and not any(
            isinstance(a, Mapping) and "hang_up_after" in a for a in actions
        ):
            actions.append({"hang_up_after": self.hang_up_after})
        return CallerScript(actions)


@dataclass(frozen=True)
class RingResult:
    """What ringing one endpoint came to: status is answered, busy, failed or no-answer."""

    status: str
    seconds: float  # from ringing start to answer / give-up
    rings: int
    sip_code: int


def ring(behaviour: AgentBehaviour, ring_seconds: float, limit_seconds: float) -> RingResult:
    """Ring an endpoint for at most `limit_seconds` (Dial timeout + Twilio's buffer)."""
    cadence = behaviour.ring_seconds or ring_seconds
    if behaviour.outcome == "busy":
        return RingResult("busy", 0.0, 0, 486)
    if behaviour.outcome == "fail":
        return RingResult("failed", 0.0, 0, 500)
    heard = max(1, math.ceil(limit_seconds / cadence))
    if behaviour.outcome == "never":
        return RingResult("no-answer", limit_seconds, heard, 487)
    at = behaviour.answer_after_rings * cadence
    if at <= limit_seconds:
        return RingResult("answered", at, behaviour.answer_after_rings, 200)
    return RingResult("no-answer", limit_seconds, heard, 487)
