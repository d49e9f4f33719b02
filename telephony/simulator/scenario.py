"""Scenario files: a hotline number, its agents, and callers with scripts, in YAML.

```yaml
number: "+3726000000"
voice_url: http://127.0.0.1:5000/voice/incoming   # optional when the number is configured
status_callback: http://127.0.0.1:5000/voice/status  # optional
fallback_url: http://127.0.0.1:5000/voice/fallback   # optional
agents:
  "client:anna": {name: anna, answer_after_rings: 2, hang_up_after: 60, press: "1"}
  "+3725550001": busy
calls:
  - from: "+3725123456"
    at: 0                     # virtual seconds after the scenario starts
    script: [{press: "1"}, {hang_up_after: 120}]
expect:                       # optional
  - call: 0
    status: completed
    heard: "Good morning"     # a substring of something the caller heard
    pressed: "1"
    dial_status: completed    # DialCallStatus of the last <Dial> action
```
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .calls import CallRecord
from .core import Simulator
from .transcript import Transcript, merge


@dataclass
class ScenarioResult:
    transcript: Transcript
    records: list[CallRecord]
    failures: list[str] = field(default_factory=list)
    origin: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def format(self) -> str:
        return self.transcript.format(origin=self.origin, kinds=_kinds())

    def __str__(self) -> str:
        return self.format()


def _kinds() -> set[str]:
    from .transcript import READABLE

    return READABLE


def load_scenario(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, Mapping) or "calls" not in data:
        raise ValueError(f"{path}: a scenario needs at least `calls:`")
    return dict(data)


def run_scenario(sim: Simulator, scenario: Mapping[str, Any],
                 timeout: float = 60.0) -> ScenarioResult:
    """Configure the number and agents, run every call (each on its own thread), check
    `expect:`. Calls start in `at` order; a later `at` also starts a little later in wall
    time (scaled by `sim.time_scale`) so queue order matches the scenario."""
    number = str(scenario.get("number", ""))
    if scenario.get("voice_url"):
        sim.add_number(number, str(scenario["voice_url"]), scenario.get("status_callback"),
                       scenario.get("fallback_url"))
    for endpoint, behaviour in (scenario.get("agents") or {}).items():
        sim.add_agent(str(endpoint), behaviour)
    origin = sim.clock.now()
    calls = sorted(enumerate(scenario["calls"]), key=lambda ic: float(ic[1].get("at", 0)))
    records: dict[int, CallRecord] = {}
    previous = 0.0
    for index, call in calls:
        at = float(call.get("at", 0))
        if at > previous and sim.time_scale > 0:
            time.sleep((at - previous) * sim.time_scale)
        previous = at
        records[index] = sim.start_inbound(str(call["from"]), str(call.get("to", number)),
                                           call.get("script") or [], at=origin + at)
    deadline = time.monotonic() + timeout
    for record in records.values():
        record.call.done.wait(max(0.0, deadline - time.monotonic()))
    ordered = [records[i] for i in sorted(records)]
    end = max((r.call.end_t or r.call.t) for r in ordered) if ordered else origin
    sim.clock.advance_to(end)
    result = ScenarioResult(merge(r.transcript for r in ordered), ordered, origin=origin)
    result.failures = check_expectations(ordered, scenario.get("expect") or [])
    return result


def check_expectations(records: list[CallRecord], expect: list[Mapping[str, Any]]) -> list[str]:
    failures: list[str] = []
    for item in expect:
        i = int(item.get("call", 0))
        if i >= len(records):
            failures.append(f"expect: no call {i}")
            continue
        rec = records[i]
        if "status" in item and rec.status != item["status"]:
            failures.append(f"call {i}: status {rec.status!r}, expected {item['status']!r}")
        if "heard" in item and not any(str(item["heard"]) in line.text
                                       for line in rec.transcript.of_kind("hears")):
            failures.append(f"call {i}: never heard {item['heard']!r}")
        if "pressed" in item:
            pressed = [str(line.data.get("digits", "")) for line in rec.transcript.of_kind("presses")
                       if line.call_sid == rec.sid]
            if str(item["pressed"]) not in pressed:
                failures.append(f"call {i}: pressed {pressed}, expected {item['pressed']!r}")
        if "dial_status" in item:
            statuses = [h.params.get("DialCallStatus") for h in rec.hits()
                        if "DialCallStatus" in h.params]
            last = statuses[-1] if statuses else None
            if last != item["dial_status"]:
                failures.append(f"call {i}: DialCallStatus {last!r}, "
                                f"expected {item['dial_status']!r}")
    return failures
