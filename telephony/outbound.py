"""The one dialler: every outbound call the product places goes through `Dialler.place_call`.

It runs the outbound guard at the moment of dialling (opt-outs from SQL, the card's zone and
window, every zone of the number) and only then asks Twilio's REST API for the call. A blocked
attempt is written on the client's card with its reason and the next allowed time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from recordings import card, db
from routing_rules.outbound import OutboundTarget, Verdict, outbound_verdict
from routing_rules.schema import Rules

from . import numbers

if TYPE_CHECKING:
    from .context import TelephonyContext

log = logging.getLogger("hotline.outbound")

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
AGENT_RING_TIMEOUT_SECONDS = 30  # how long the agent's own phone rings on a callback
# The bridge checks before its whisper; the client's phone rings a few seconds later. A window
# that closes within this margin is taken as closed, so no call rings past the hour it allows.
BRIDGE_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True)
class PlaceResult:
    placed: bool
    verdict: Verdict
    call_sid: str | None = None
    client_id: int | None = None
    error: str | None = None


def verdict_data(verdict: Verdict) -> dict[str, Any]:
    return {
        "reason": verdict.reason,
        "next_allowed_at": verdict.next_allowed_at.isoformat() if verdict.next_allowed_at else None,
        "next_allowed_local": {z: t.isoformat() for z, t in (verdict.next_allowed_local or {}).items()},
        "zones": list(verdict.zones),
    }


class Dialler:
    def __init__(
        self,
        *,
        twilio: Callable[[], Any],
        rules: Rules,
        status_callback: str,
        recording_callback: str,
        bridge_url: Callable[..., str],
    ) -> None:
        self._twilio = twilio
        self.rules = rules
        self.status_callback = status_callback
        self.recording_callback = recording_callback
        self.bridge_url = bridge_url

    # --- the guard --------------------------------------------------------------------------

    def target(self, s: Any, raw: str, purpose: str | None) -> tuple[OutboundTarget, str | None, int | None]:
        """(what the guard judges, e164, client_id) with the card's facts read in session `s`."""
        e164 = numbers.normalize(raw, self.rules.hotline.country)
        facts, client_id = (card.outbound_facts(s, e164) if e164 else (None, None))
        target = numbers.outbound_target(e164 or raw, facts, purpose, default_region=self.rules.hotline.country)
        return target, e164, client_id

    def verdict(self, s: Any, raw: str, now: datetime, purpose: str | None) -> tuple[Verdict, str | None, int | None]:
        """(verdict, e164, client_id) with the card's facts read in session `s`."""
        target, e164, client_id = self.target(s, raw, purpose)
        return outbound_verdict(target, self.rules.outbound, now), e164, client_id

    def check(self, raw: str, now: datetime, purpose: str | None = None) -> Verdict:
        with db.session() as s:
            return self.verdict(s, raw, now, purpose)[0]

    def check_at_bridge(self, raw: str, now: datetime, purpose: str | None = None) -> Verdict:
        """The guard just before the client is dialled: allowed now and still `BRIDGE_MARGIN`
        later (the whisper plays first), else the verdict that blocks, with its reason and the
        next allowed time."""
        with db.session() as s:
            target = self.target(s, raw, purpose)[0]  # the card read once, judged at both times
        verdict = outbound_verdict(target, self.rules.outbound, now)
        if verdict.allowed:
            later = outbound_verdict(target, self.rules.outbound, now + BRIDGE_MARGIN)
            if not later.allowed:
                return later
        return verdict

    def screen(self, phones: Iterable[str], now: datetime, purpose: str | None = None) -> list[dict[str, Any]]:
        results = []
        with db.session() as s:
            for raw in phones:
                verdict, e164, _ = self.verdict(s, raw, now, purpose)
                results.append({"phone": raw, "e164": e164, "allowed": verdict.allowed, **verdict_data(verdict)})
        return results

    # --- placing calls ----------------------------------------------------------------------

    def place_call(
        self,
        raw: str,
        *,
        agent_id: str,
        purpose: str,
        requested_by: str,
        now: datetime | None = None,
        callback_id: int | None = None,
    ) -> PlaceResult:
        """Agent first: ring the agent, whose answer fetches the bridge that dials the client.

        The bridge re-runs the guard before it dials the client, so an opt-out that lands in
        the seconds between the two legs still wins.
        """
        now = now or datetime.now(UTC)
        agent = self.rules.agents[agent_id]
        with db.session() as s:
            verdict, e164, client_id = self.verdict(s, raw, now, purpose)
            if not verdict.allowed:
                client_id = self._log_blocked(s, e164, client_id, verdict, now, purpose, requested_by, callback_id)
                return PlaceResult(False, verdict, client_id=client_id)
        assert e164 is not None  # an allowed verdict always has a valid number
        params = {"client": e164, "agent": agent_id, "purpose": purpose}
        if callback_id is not None:
            params["callback"] = str(callback_id)
        try:
            created = self._twilio().calls.create(
                to=agent.endpoint,
                from_=self.rules.hotline.numbers[0],
                url=self.bridge_url(**params),
                method="POST",
                status_callback=self.status_callback,
                status_callback_event=STATUS_EVENTS,
                status_callback_method="POST",
                timeout=AGENT_RING_TIMEOUT_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 — Twilio said no (bad number, auth, outage): say so, place nothing
            log.warning("twilio refused the call: %s", error)
            return PlaceResult(False, verdict, client_id=client_id, error=str(error))
        with db.session() as s:
            client, _ = card.find_or_create_client(s, e164)
            card.append_event(
                s, client.id, "outbound_placed",
                {"agent": agent_id, "purpose": purpose, "by": requested_by, "callback_id": callback_id,
                 "zones": list(verdict.zones)},
                at=now, call_sid=created.sid, agent_id=agent_id, key=f"placed:{created.sid}",
            )
            client_id = client.id
        return PlaceResult(True, verdict, call_sid=created.sid, client_id=client_id)

    def log_blocked_at_bridge(self, raw: str, verdict: Verdict, *, purpose: str, agent_id: str,
                              callback_id: int | None, now: datetime | None = None,
                              call_sid: str | None = None) -> int | None:
        """The bridge's second check refused the client (an opt-out or a closed window that
        landed while the agent's phone rang): the attempt goes on the card as one blocked before
        dialling does, by "bridge". Returns the client's id (None for an invalid number).
        `call_sid`, the agent's leg, keys the event: a repeated bridge request writes it once."""
        now = now or datetime.now(UTC)
        e164 = numbers.normalize(raw, self.rules.hotline.country)
        with db.session() as s:
            return self._log_blocked(s, e164, None, verdict, now, purpose, "bridge", callback_id,
                                     agent_id=agent_id, call_sid=call_sid,
                                     key=f"blocked-at-bridge:{call_sid}" if call_sid else None)

    def _log_blocked(self, s: Any, e164: str | None, client_id: int | None, verdict: Verdict, now: datetime,
                     purpose: str | None, requested_by: str, callback_id: int | None, *,
                     agent_id: str | None = None, call_sid: str | None = None,
                     key: str | None = None) -> int | None:
        if e164 is None:  # an invalid number has no card to write on; the log line is the record
            log.info("blocked dial to an invalid number: %s", verdict.reason)
            return None
        if client_id is None:
            client, _ = card.find_or_create_client(s, e164)
            client_id = client.id
        data = {**verdict_data(verdict), "purpose": purpose, "by": requested_by, "callback_id": callback_id,
                "phone": e164}
        if agent_id is not None:
            data["agent"] = agent_id
        card.append_event(s, client_id, "outbound_blocked", data, at=now, call_sid=call_sid, agent_id=agent_id,
                          key=key)
        return client_id


def dialler_for(ctx: TelephonyContext) -> Dialler:
    """The dialler of a process: its Twilio client, the current rules and the callback URLs
    (`ctx`: the web request's runtime or the worker's job context alike)."""
    return Dialler(
        twilio=lambda: ctx.twilio, rules=ctx.current_rules(),
        status_callback=ctx.url("voice.status"),
        recording_callback=ctx.url("voice.recording", kind="call"),
        bridge_url=lambda **params: ctx.url("voice.outbound_bridge", **params),
    )
