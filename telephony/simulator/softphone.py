"""A terminal softphone: hear prompts as text, type keys at a `<Gather>`, `h` hangs up."""

from __future__ import annotations

import sys
from typing import TextIO

from .calls import CallRecord
from .core import Simulator
from .parties import Action, CallerScript
from .transcript import READABLE, Line

PROMPT = "keys (digits, h = hang up, r N = speak N s, Enter = stay silent)> "


class TerminalScript(CallerScript):
    """A caller script read from a terminal, one line whenever the call listens."""

    def __init__(self, input: TextIO, output: TextIO) -> None:
        super().__init__()
        self.input, self.output = input, output
        self._next: Action | None = None

    def _read(self) -> Action:
        self.output.write(PROMPT)
        self.output.flush()
        line = self.input.readline()
        text = line.strip()
        if not line or text.lower() == "h":
            return Action("hang_up", True)
        if not text:
            return Action("wait", 3600)
        if text.lower().startswith("r"):
            return Action("record", float(text[1:].strip() or 5))
        if text.lower().startswith("say "):
            return Action("speak", text[4:])
        return Action("press", text)

    def peek(self) -> Action | None:
        if self._next is None:
            self._next = self._read()
        return self._next

    def pop(self) -> Action | None:
        action, self._next = self.peek(), None
        return action

    def __bool__(self) -> bool:
        return True


def run_interactive(sim: Simulator, from_: str, to: str, input: TextIO | None = None,
                    output: TextIO | None = None) -> CallRecord:
    """Place one inbound call driven from the terminal; prints the call as it happens."""
    input = input or sys.stdin
    output = output or sys.stdout
    script = TerminalScript(input, output)
    leg, party, config = sim._inbound(from_, to, script, None)
    origin = leg.t

    def show(line: Line) -> None:
        if line.kind in READABLE:
            output.write(line.format(origin) + "\n")
            output.flush()

    leg.record.transcript.listeners.append(show)
    sim._run_inbound(leg, party, config)
    output.write(f"call {leg.sid} ended: {leg.status}\n")
    return leg.record
