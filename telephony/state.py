"""Live state in Redis: agents, calls and waiting lines.

Every process (web, worker) shares this state, so nothing lives in memory. Times are epoch
seconds passed in as `now`: the callers own the clock, tests never sleep. Agent changes run as
Lua scripts (`telephony/lua/`) so that a claim, its lazy expiries and its log entry happen in
one atomic step: no agent can be claimed by two calls, none stays reserved forever, and every
status change is written to `status_log`. See docs/live-state.md.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, Final, NamedTuple, cast

import redis
from redis.exceptions import NoScriptError

from routing_rules.engine import AgentSnapshot

AVAILABLE: Final = "available"
RINGING: Final = "ringing"
ON_CALL: Final = "on_call"
WRAP_UP: Final = "wrap_up"
AWAY: Final = "away"
OFFLINE: Final = "offline"
STATUSES: Final = (AVAILABLE, RINGING, ON_CALL, WRAP_UP, AWAY, OFFLINE)
# The only statuses a person may choose; the others follow calls.
PERSON_STATUSES: Final = frozenset({AVAILABLE, AWAY, OFFLINE})

CALL_TTL_SECONDS: Final = 24 * 3600  # a call's state outlives any call; then Redis frees it
HANDLE_TIMES_KEPT: Final = 50  # recent enough to follow the day, enough to smooth outliers
DEFAULT_HANDLE_SECONDS: Final = 180  # a typical support call, until the queue has data
LAST_AGENT_TTL_SECONDS: Final = 90 * 86400  # sticky routing follows a recent relationship
STATUS_LOG_READ_LIMIT: Final = 10000  # the stream is capped near this length (Lua LOG_MAXLEN)

_LUA_DIR: Final = Path(__file__).with_name("lua")


class UnknownAgent(LookupError):
    """The agent id was never synced from the rules."""


class StatusChange(NamedTuple):
    """One entry of the status log: who changed which agent from what to what, and when."""

    agent: str
    from_status: str
    to_status: str
    by: str
    at: float
    call_sid: str


class DialFacts(NamedTuple):
    """What deciding a dial attempt reads from live state."""

    attempt: int  # this attempt's number, 1 for the first
    tried: set[str]  # agents already offered this call
    last_agent: str | None  # who last served the caller's number (sticky routing)


class Keys:
    """Every Redis key name, built in one place (like rq's `Job.key_for`)."""

    def __init__(self, prefix: str = "hotline:") -> None:
        self.prefix = prefix

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    def agents(self, agent_ids: Iterable[str]) -> list[str]:
        """`agent(i)` of each id (one list, no call an id: a queue's agents on every routed call)."""
        head = f"{self.prefix}agent:"
        return [head + agent_id for agent_id in agent_ids]

    @property
    def agents_index(self) -> str:
        return f"{self.prefix}agents"

    @property
    def status_log(self) -> str:
        return f"{self.prefix}status_log"

    @property
    def free_agents(self) -> str:
        """The routing index's available agents (id → their routing numbers, packed: see
        `routing_numbers`); the scripts name it after `status_log` (`index_keys` in
        _prelude.lua). Named for its format: a tree whose index held words wrote `free_agents`,
        left behind at the upgrade (`sync_agents` at start builds this one)."""
        return f"{self.prefix}free_agents:packed"

    @property
    def agent_timers(self) -> str:
        """The routing index's ringing and wrapping-up agents, scored by when that lapses."""
        return f"{self.prefix}agent_timers"

    @property
    def calls_day(self) -> str:
        """The hotline's local date the agents' `calls_today` counters belong to."""
        return f"{self.prefix}calls_day"

    def call(self, sid: str) -> str:
        return f"{self.prefix}call:{sid}"

    def tried(self, sid: str) -> str:
        return f"{self.prefix}call:{sid}:tried"

    def claimed(self, sid: str) -> str:
        return f"{self.prefix}call:{sid}:claimed"

    def line(self, queue: str) -> str:
        return f"{self.prefix}line:{queue}"

    def handle_times(self, queue: str) -> str:
        return f"{self.prefix}handle_times:{queue}"

    def last_agent(self, e164: str) -> str:
        return f"{self.prefix}last_agent:{e164}"

    def rate_window(self, who: str, window: int) -> str:
        """Requests of one API caller (`who`: a token's hash, a user, an IP) in one fixed window."""
        return f"{self.prefix}ratelimit:{who}:{window}"

    def login_attempts(self, who: str) -> str:
        """Console login attempts of one (user name, address) hash in the current window."""
        return f"{self.prefix}console:login:{who}"

    def login_failures(self, who: str) -> str:
        """Failed console logins of one user name's hash, from any address, in the current window."""
        return f"{self.prefix}console:login-failures:{who}"

    def periodic(self, chain: str) -> str:
        """Present while a periodic job chain (the dispatch tick, the overdue check) is alive."""
        return f"{self.prefix}periodic:{chain}"

    def card_events(self, stage: str = "pending") -> str:
        """Webhook card events for the batched writer: `pending`, then `processing` while applied."""
        return f"{self.prefix}card_events:{stage}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value: Any) -> str:
    """A float as Lua reads it back exactly (repr is the shortest exact form)."""
    return repr(float(value))


def _float(value: Any) -> float:
    text = _text(value) if value is not None else ""
    return float(text) if text else 0.0


def _hash(flat: list[bytes]) -> dict[str, str]:
    """A hash as a script returns it (HGETALL inside Lua: name, value, …), decoded pair by pair
    without a Python step a field (a call's hash has a few dozen, read on most webhooks)."""
    words = map(bytes.decode, flat)
    return dict(zip(words, words, strict=True))


def _field_pairs(fields: Mapping[str, Any]) -> list[Any]:
    """Call fields as the scripts take them: the number of pairs, then name, value, …
    (None values are left out)."""
    flat: list[Any] = []
    for name, value in fields.items():
        if value is not None:
            flat += [name, _text(value)]
    return [len(flat) // 2, *flat]


ROUTING_NUMBERS: Final = struct.Struct("<ddd")  # idle_since, last_offered_at, misses (`routing_numbers` in Lua)


def routing_numbers(packed: bytes) -> tuple[float, float, int]:
    """One agent's value in the routing index, unpacked (the index's tests read it)."""
    idle_since, last_offered_at, misses = ROUTING_NUMBERS.unpack(packed)
    return idle_since, last_offered_at, int(misses)


def _free_rows(ids: bytes, numbers: bytes) -> list[AgentSnapshot]:
    """Available agents as the Lua `free_rows` returns them: their ids, and their routing
    numbers packed, three doubles an agent. Unpacked whole (one `struct` call for the queue):
    parsing a hundred agents' numbers from text cost ~70 µs a routed call, this ~5."""
    names = ids.decode().split()
    values = struct.unpack(f"<{3 * len(names)}d", numbers)  # a count that disagrees: struct.error
    columns = zip(names, repeat("available", len(names)), values[0::3], values[1::3], map(int, values[2::3]), strict=True)
    return list(map(tuple.__new__, repeat(AgentSnapshot), columns))  # type: ignore[arg-type]


def _agent_rows(words: bytes) -> list[AgentSnapshot]:
    """Agents as the Lua `snapshot_rows` returns them: one string, five words an agent. This
    runs for every agent of a queue on every routed call, so the columns are converted whole
    (`map`, no Python step an agent) and the tuples made by their own constructor (NamedTuple's
    `__new__` is Python)."""
    parts = words.decode().split()
    try:
        misses = list(map(int, parts[4::5]))  # written as whole numbers
    except ValueError:
        misses = [int(float(word)) for word in parts[4::5]]
    columns = zip(parts[0::5], parts[1::5], map(float, parts[2::5]), map(float, parts[3::5]), misses,
                  strict=True)  # a word missing: ValueError
    return list(map(tuple.__new__, repeat(AgentSnapshot), columns))  # type: ignore[arg-type]


class _Script:
    """A Lua script of the live state, run by its SHA straight through the client's
    `execute_command`. redis-py's `Script` imports its pipeline classes and checks the client
    against them on every call, a fifth of a short script's client CPU; this is the rest of
    it. A server without the script (restarted, or its scripts flushed) answers NOSCRIPT: the
    script did not run, so it is loaded and sent once more, as redis-py does."""

    def __init__(self, conn: redis.Redis, body: str) -> None:
        self.conn = conn
        self.body = body
        self.sha = hashlib.sha1(body.encode("utf-8")).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = self.conn.script_load(self.body)
            return self.conn.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


def _load_script(conn: redis.Redis, name: str, prelude: bool = True, around: tuple[str, str] = ("", "")) -> _Script:
    """`name`.lua for `conn`, after the prelude; `around` wraps the script's own text."""
    body = around[0] + (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8") + around[1]
    if prelude:
        body = (_LUA_DIR / "_prelude.lua").read_text(encoding="utf-8") + "\n" + body
    return _Script(conn, body)


# A carrier script's own body runs as a function; around it, the card events it carries (see
# `_Carrier`) are taken off the end of KEYS and ARGV first and pushed onto their list after.
_CARRY_BEFORE: Final = """
local carried = tonumber(table.remove(ARGV))
local card_list, card_events = nil, {}
if carried > 0 then
  card_list = table.remove(KEYS)
  for i = carried, 1, -1 do card_events[i] = table.remove(ARGV) end
end
local function body()
"""
_CARRY_AFTER: Final = """
end
local result = body()
if carried > 0 then redis.call('RPUSH', card_list, unpack(card_events)) end
return result
"""


class _Carrier:
    """A live-state script that can carry a request's card events: they are pushed onto the
    card events' list in the same script, after its own writes. A webhook's last write then
    takes them along instead of a separate RPUSH (one round trip fewer). If the script fails,
    nothing was pushed: the caller still holds the events and sends them the usual way."""

    def __init__(self, conn: redis.Redis, name: str, events_key: str) -> None:
        self.script = _load_script(conn, name, around=(_CARRY_BEFORE, _CARRY_AFTER))
        self.events_key = events_key

    def __call__(self, keys: list[Any], args: list[Any], carry: Sequence[str] = ()) -> Any:
        if carry:
            return self.script(keys=[*keys, self.events_key], args=[*args, *carry, len(carry)])
        return self.script(keys=keys, args=[*args, 0])


class LiveState:
    """Agents, calls and waiting lines of one hotline, shared by all processes via Redis."""

    def __init__(self, redis: redis.Redis, prefix: str = "hotline:") -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        events = self.keys.card_events()  # where carried card events go (`_Carrier`)
        self._sync = _load_script(redis, "sync_agents")
        self._snapshot = _load_script(redis, "snapshot")
        self._claim = _Carrier(redis, "claim_agents", events)
        self._set_status = _load_script(redis, "set_status")
        self._mark_on_call = _load_script(redis, "mark_on_call")
        self._release_unanswered = _load_script(redis, "release_unanswered")
        self._release_after_call = _Carrier(redis, "release_after_call", events)
        self._release_missed = _load_script(redis, "release_missed")
        self._update_call = _Carrier(redis, "update_call", events)
        self._start_attempt = _load_script(redis, "start_attempt")
        self._end_call = _Carrier(redis, "end_call", events)
        self._start_day = _load_script(redis, "start_day", prelude=False)
        self._count_hit = _load_script(redis, "count_hit", prelude=False)
        self._save_call = _Carrier(redis, "save_call", events)
        self._call_and_claimed = _load_script(redis, "call_and_claimed", prelude=False)

    # ---- agents -------------------------------------------------------------------------

    def sync_agents(self, agents: Mapping[str, bool], now: float) -> list[str]:
        """Create agents the rules name but Redis lacks; returns the ids created.

        `agents` maps id → available_by_default. Existing agents keep their status: only
        explicit, logged rules change a status, never a rules reload.
        """
        ids = list(agents)
        if not ids:
            return []
        args: list[str] = [_num(now)]
        for agent_id in ids:
            args += [agent_id, AVAILABLE if agents[agent_id] else OFFLINE]
        keys = [self.keys.status_log, self.keys.agents_index] + self.keys.agents(ids)
        return [_text(i) for i in self._sync(keys=keys, args=args)]

    def note_periodic(self, chain: str, seconds: float) -> None:
        """A periodic chain ran: it counts as alive for `seconds` more."""
        self.redis.set(self.keys.periodic(chain), _num(time.time()), ex=max(1, math.ceil(seconds)))

    def start_periodic(self, chain: str, seconds: float) -> bool:
        """Whether to start a periodic chain: True (and alive for `seconds`) only when it was not
        alive, and for one caller only, however many workers ask at once."""
        key = self.keys.periodic(chain)
        return bool(self.redis.set(key, _num(time.time()), ex=max(1, math.ceil(seconds)), nx=True))

    def agent_ids(self) -> set[str]:
        """Every agent ever synced (the rules may have dropped some since)."""
        return {_text(i) for i in self.redis.smembers(self.keys.agents_index)}

    def snapshot(self, ids: Iterable[str], now: float) -> list[AgentSnapshot]:
        """The agents' state for routing, with ended wrap-ups and expired rings made available.

        The expiries are written back in the same script, so the next reader sees (and the log
        holds) the same transition. Unknown ids are left out.
        """
        ids = list(ids)
        if not ids:
            return []
        return _agent_rows(self._snapshot(
            keys=[self.keys.status_log] + self.keys.agents(ids),
            args=[_num(now), *ids],
        ))

    def agent(self, agent_id: str, now: float) -> dict[str, str] | None:
        """All fields of one agent (settled as of `now`), for the API and the dashboard."""
        if not self.snapshot([agent_id], now):
            return None
        raw = self.redis.hgetall(self.keys.agent(agent_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def agents_by_status(self, ids: Iterable[str], now: float) -> dict[str, int]:
        """Count of agents per status (every status present, zero included) for metrics."""
        counts = dict.fromkeys(STATUSES, 0)
        for agent in self.snapshot(ids, now):
            counts[agent.status] = counts.get(agent.status, 0) + 1
        return counts

    def start_day(self, day: str, ids: Iterable[str]) -> bool:
        """Record `day` (the hotline's local date) as the day of the agents' `calls_today`
        counters; True (and every known agent of `ids` zeroed, atomically) only when it moves
        the day forward. An earlier or equal day changes nothing, the first day recorded is not
        a change (the counters already belong to it)."""
        keys = [self.keys.calls_day] + self.keys.agents(ids)
        return bool(self._start_day(keys=keys, args=[day]))

    def set_status(self, agent_id: str, status: str, now: float, by: str) -> tuple[str, str]:
        """A person sets an agent's status; returns (previous, current).

        Refusal is a value, not an exception: `current != status` means refused (available
        while on a call or ringing — the call's own callbacks end those). Away and offline are
        always accepted, so a supervisor can unstick an agent whose call callbacks were lost.
        Every change is logged with `by`; becoming available resets the miss count.
        """
        if status not in PERSON_STATUSES:
            raise ValueError(f"people may set only {sorted(PERSON_STATUSES)}, not {status!r}")
        previous, current = self._set_status(
            keys=[self.keys.status_log, self.keys.agent(agent_id)],
            args=[_num(now), agent_id, status, by],
        )
        if not previous:
            raise UnknownAgent(agent_id)
        return _text(previous), _text(current)

    def claim_agents(
        self,
        candidates: Sequence[str],
        call_sid: str,
        count: int,
        now: float,
        ring_until: float,
        *,
        dial: bool = False,
        carry: Sequence[str] = (),
    ) -> list[str]:
        """Reserve up to `count` available agents for a call, in candidate order; atomic.

        One Lua script walks the candidates, so two calls can never hold the same agent. The
        reservation ends by itself at `ring_until` (set it a little past the Dial timeout) in
        case the call's callbacks never arrive. `dial=True` also notes the dial in the same step:
        the claimed agents count as tried, and a known call stores `claimed` and
        `dial_started_at`. `carry`: card events pushed in the same script (`_Carrier`).
        """
        if count <= 0 or not candidates:
            return []
        ids = list(dict.fromkeys(candidates))  # a duplicate candidate must not skew the walk
        claimed = self._claim(
            keys=[self.keys.status_log, self.keys.claimed(call_sid), self.keys.call(call_sid),
                  self.keys.tried(call_sid)] + self.keys.agents(ids),
            args=[_num(now), call_sid, count, _num(ring_until), CALL_TTL_SECONDS, int(dial), *ids],
            carry=carry,
        )
        return [_text(i) for i in claimed]

    def claimed(self, call_sid: str) -> set[str]:
        """Every agent ever claimed for the call (ring-all: whom to release or count missed)."""
        return {_text(i) for i in self.redis.smembers(self.keys.claimed(call_sid))}

    def mark_on_call(self, agent_id: str, call_sid: str, now: float, *, claimed: Iterable[str] | None = None,
                     e164: str | None = None) -> bool:
        """`answer` without the call's fields: True only if the agent holds the call."""
        return self.answer(agent_id, call_sid, now, ring=claimed, e164=e164)[0]

    def answer(self, agent_id: str, call_sid: str, now: float, *, ring: Iterable[str] | None = None,
               e164: str | None = None) -> tuple[bool, dict[str, str] | None]:
        """The agent accepted the whisper: on_call, the other ring-all agents are freed, and a
        call we know records `answered_by` and `answered_at`; with `e164`, the agent becomes
        the number's last agent (sticky routing). One script, which also returns the call's
        fields (None for a call we do not know).

        The held flag is True only if the agent was ringing for this call (or its ring expired
        just before and nobody claimed the agent since); a repeated callback gives True again.
        `ring`: the agents the dial rang, when the caller knows them (the whisper's URL names
        them); otherwise the call's claimed set is read first, one round trip more.
        """
        others = sorted(set(self.claimed(call_sid) if ring is None else ring) - {agent_id})
        held, flat = self._mark_on_call(
            keys=[self.keys.status_log, self.keys.agent(agent_id), self.keys.call(call_sid),
                  self.keys.last_agent(e164) if e164 else ""] + self.keys.agents(others),
            args=[_num(now), agent_id, call_sid, CALL_TTL_SECONDS, LAST_AGENT_TTL_SECONDS, *others],
        )
        return bool(held), (_hash(flat) if flat else None)

    def release_unanswered(self, call_sid: str, except_agent: str | None, now: float,
                           claimed: set[str] | None = None) -> list[str]:
        """Free the agents still ringing for a call (answered elsewhere, or caller hung up).

        No miss is counted: these agents were not needed. Returns the ids freed. `claimed`, when
        the caller has just read it (`end_call`), saves reading it again.
        """
        others = sorted((self.claimed(call_sid) if claimed is None else claimed) - {except_agent or ""})
        if not others:
            return []
        released = self._release_unanswered(
            keys=[self.keys.status_log] + self.keys.agents(others),
            args=[_num(now), call_sid, except_agent or "", *others],
        )
        return [_text(i) for i in released]

    def release_after_call(
        self, agent_id: str, call_sid: str, now: float, wrap_up_seconds: float
    ) -> bool:
        """The call ended: wrap-up until now + wrap_up_seconds (available if 0).

        Resets misses, sets idle_since to the end of wrap-up (longest-idle counts from there)
        and counts the call. Only the call the agent holds can release it, so a repeated or
        stale callback returns False and changes nothing.
        """
        return bool(self._release(agent_id, call_sid, now, wrap_up_seconds))

    def release_after_talk(self, agent_id: str, call_sid: str, now: float, wrap_up_seconds: float, queue: str,
                           handle_seconds: float, carry: Sequence[str] = ()) -> tuple[bool, int]:
        """An answered call ended: `release_after_call`, and the queue remembers the call's
        handle time (the last 50 are kept, for wait estimates) once per call, however often
        Twilio repeats the Dial action, in one script that also pushes the `carry`d card
        events. Returns (released, callers waiting in the queue's line): an agent who just
        freed up wakes the dispatcher only when someone waits."""
        released, waiting = self._release(agent_id, call_sid, now, wrap_up_seconds,
                                          talk_keys=[self.keys.handle_times(queue), self.keys.line(queue),
                                                     self.keys.call(call_sid)],
                                          talk_args=[_num(handle_seconds), HANDLE_TIMES_KEPT], carry=carry)
        return bool(released), int(waiting)

    def _release(self, agent_id: str, call_sid: str, now: float, wrap_up_seconds: float, *,
                 talk_keys: Sequence[str] = (), talk_args: Sequence[Any] = (), carry: Sequence[str] = ()) -> Any:
        """release_after_call.lua: the wrap-up's end worked out once for both callers; with the
        talk's keys and arguments (the queue's handle times and line, the call) it also keeps the
        handle time and notes who talked (see the script)."""
        wrap_up_until = now + max(0.0, float(wrap_up_seconds))
        return self._release_after_call(
            keys=[self.keys.status_log, self.keys.agent(agent_id), *talk_keys],
            args=[_num(now), agent_id, call_sid, _num(wrap_up_until), *talk_args],
            carry=carry,
        )

    def release_missed(
        self, agent_id: str, call_sid: str, now: float, miss_limit: int
    ) -> tuple[str | None, int]:
        """The agent did not answer this call: count a miss; returns (status, misses).

        At `miss_limit` consecutive misses the agent is set away by "rule:miss_limit" (logged)
        so a caller is not offered to an absent agent again and again. One miss per (agent,
        call): repeats return the current values unchanged. Unknown agent → (None, 0).
        """
        status, misses = self._release_missed(
            keys=[self.keys.status_log, self.keys.agent(agent_id)],
            args=[_num(now), agent_id, call_sid, int(miss_limit)],
        )
        return (_text(status) or None), int(misses)

    def status_log(self, agent_id: str | None = None, count: int = 100) -> list[StatusChange]:
        """Latest status changes first, optionally of one agent: "who changed my status"."""
        changes: list[StatusChange] = []
        batch = count if agent_id is None else STATUS_LOG_READ_LIMIT
        entries = cast(Any, self.redis.xrevrange(self.keys.status_log, count=batch))
        for _entry_id, fields in entries:
            f = {_text(k): _text(v) for k, v in fields.items()}
            if agent_id is not None and f["agent"] != agent_id:
                continue
            changes.append(
                StatusChange(
                    agent=f["agent"],
                    from_status=f["from"],
                    to_status=f["to"],
                    by=f["by"],
                    at=_float(f["at"]),
                    call_sid=f.get("call_sid", ""),
                )
            )
            if len(changes) >= count:
                break
        return changes

    # ---- rate limits --------------------------------------------------------------------

    def count_hit(self, key: str, seconds: int) -> int:
        """Count one hit on a fixed-window counter (created with its expiry by the window's first
        hit); returns the count so far. Raises RedisError: each limiter decides how to fail."""
        return int(self._count_hit(keys=[key], args=[seconds]))

    def window_hits(self, key: str) -> tuple[int, int]:
        """A fixed-window counter's count and the seconds its window has left, without a hit:
        (0, -2) when there is none. Raises RedisError like `count_hit`."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        count, seconds_left = pipe.execute()
        return int(count or 0), int(seconds_left)

    def card_events_waiting(self) -> int:
        """Card events queued for the drainer and not yet in the card store (both its lists)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.card_events("pending"))
        pipe.llen(self.keys.card_events("processing"))
        return int(sum(pipe.execute()))

    # ---- calls --------------------------------------------------------------------------

    def save_call(self, sid: str, fields: Mapping[str, Any], now: float, carry: Sequence[str] = ()) -> None:
        """Store (or extend) a call's state; kept 24 h after the last write. `carry`: card
        events pushed in the same script (`_Carrier`)."""
        self._save_call(keys=[self.keys.call(sid)], args=[CALL_TTL_SECONDS, _num(now), *_field_pairs(fields)],
                        carry=carry)

    def get_call(self, sid: str) -> dict[str, str] | None:
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys.call(sid)))
        return dict(zip(map(bytes.decode, raw), map(bytes.decode, raw.values()), strict=True)) if raw else None

    def call_and_claimed(self, sid: str) -> tuple[dict[str, str] | None, set[str]]:
        """`get_call` and `claimed` in one round trip (an agent answering reads both)."""
        raw, claimed = self._call_and_claimed(keys=[self.keys.call(sid), self.keys.claimed(sid)])
        return (_hash(raw) if raw else None), {_text(i) for i in claimed}

    def end_call(self, sid: str, carry: Sequence[str] = ()) -> tuple[dict[str, str], set[str]] | None:
        """Mark the call ended; its fields and the agents ever claimed for it, or None when the
        call is unknown or had already ended. Atomic: of two callbacks for one end, one wins.
        `carry`: card events pushed in the same script (`_Carrier`), whatever it finds."""
        found = self._end_call(keys=[self.keys.call(sid), self.keys.claimed(sid)], args=[CALL_TTL_SECONDS],
                               carry=carry)
        if not found:
            return None
        flat, claimed = found
        fields = _hash(flat)
        return fields, {_text(agent) for agent in claimed}

    def update_call(self, sid: str, *, carry: Sequence[str] = (), **fields: Any) -> bool:
        """Change fields of a known call (None deletes one); False if the call is unknown.
        `carry`: card events pushed in the same script (`_Carrier`), the call known or not."""
        deleted = [k for k, v in fields.items() if v is None]
        args = [CALL_TTL_SECONDS, *_field_pairs(fields), *deleted]
        return bool(self._update_call(keys=[self.keys.call(sid)], args=args, carry=carry))

    def prepare_dial(self, sid: str, e164: str | None, agent_ids: Iterable[str], now: float,
                     fields: Mapping[str, Any] | None = None) -> tuple[DialFacts, list[AgentSnapshot]]:
        """A dial attempt begins, in one script: a known call takes `fields` first (route_to_queue
        restarts the attempts of a new queue), the attempt is counted, and the routing decision's
        inputs are read: DialFacts and the snapshot (as `snapshot`) of those of `agent_ids` the
        call can be offered to: available and not tried yet, all `engine.decide_dial` uses."""
        ids = list(agent_ids)
        args = [CALL_TTL_SECONDS, _num(now), *_field_pairs(fields or {})]
        attempt, tried, last, (ids, numbers) = self._start_attempt(
            keys=[self.keys.call(sid), self.keys.tried(sid), self.keys.last_agent(e164) if e164 else "",
                  self.keys.status_log],
            args=args + ids,  # the agents' keys are named in the script (one prefix)
        )
        facts = DialFacts(int(attempt), {_text(i) for i in tried}, _text(last) if last else None)
        return facts, _free_rows(ids, numbers)

    def tried(self, sid: str) -> set[str]:
        return {_text(i) for i in self.redis.smembers(self.keys.tried(sid))}

    def last_agent(self, e164: str) -> str | None:
        """Who last served this number (sticky routing); `mark_on_call` remembers them."""
        value = self.redis.get(self.keys.last_agent(e164))
        return _text(value) if value is not None else None

    # ---- waiting lines ------------------------------------------------------------------
    # One sorted set per queue, scored by when the caller first joined: live calls
    # ("call:CA…") and callbacks ("callback:42") share it, so a callback keeps its place.

    def join_line(self, queue: str, member: str, since: float) -> bool:
        """Join the line at `since`; re-joining keeps the original place. True if new."""
        return bool(self.redis.zadd(self.keys.line(queue), {member: float(since)}, nx=True))

    def restore_places(self, queue: str, places: Mapping[str, float]) -> int:
        """Put members back in the line at their times, one command for all; a member in the
        line keeps its place (`ZADD NX`, as `join_line`). Returns how many were missing."""
        if not places:
            return 0
        return int(cast(int, self.redis.zadd(self.keys.line(queue), dict(places), nx=True)))

    def position(self, queue: str, member: str) -> int | None:
        """1-based place in the line, None if not in it."""
        rank = cast(int | None, self.redis.zrank(self.keys.line(queue), member))
        return None if rank is None else int(rank) + 1

    def line_length(self, queue: str) -> int:
        return int(cast(int, self.redis.zcard(self.keys.line(queue))))

    def longest_waiting(self, queue: str) -> tuple[str, float] | None:
        first = self._line_range(queue, 0, 0)
        return first[0] if first else None

    def pop_longest(self, queue: str) -> str | None:
        """Take the longest-waiting member off the line; atomic, so two agents never get one."""
        popped = self.redis.zpopmin(self.keys.line(queue))
        return _text(popped[0][0]) if popped else None

    def leave_line(self, queue: str, member: str) -> bool:
        return bool(self.redis.zrem(self.keys.line(queue), member))

    def line(self, queue: str) -> list[tuple[str, float]]:
        """The whole line, longest waiting first, with the time each first joined."""
        return self._line_range(queue, 0, -1)

    def line_page(self, queue: str, start: int, count: int) -> list[tuple[str, float]]:
        """`count` members of the line from 0-based place `start`, as `line` gives them: the
        dispatcher walks the line a page at a time, stepping over callbacks not due yet."""
        return self._line_range(queue, start, start + count - 1) if count > 0 else []

    def _line_range(self, queue: str, start: int, stop: int) -> list[tuple[str, float]]:
        """Members from place `start` to `stop` (inclusive; -1 the last) with their times."""
        members = cast(Any, self.redis.zrange(self.keys.line(queue), start, stop, withscores=True))
        return [(_text(m), float(s)) for m, s in members]

    # ---- estimated wait -----------------------------------------------------------------

    def average_handle_seconds(self, queue: str) -> float:
        values = [_float(v) for v in self.redis.lrange(self.keys.handle_times(queue), 0, -1)]
        return sum(values) / len(values) if values else float(DEFAULT_HANDLE_SECONDS)

    def estimated_wait_seconds(self, queue: str, position: int, agents_on_duty: int) -> int:
        """Average handle time × the rounds of calls ahead: ceil(position / agents)."""
        if position <= 0:
            return 0
        rounds = math.ceil(position / max(1, agents_on_duty))
        return round(self.average_handle_seconds(queue) * rounds)
