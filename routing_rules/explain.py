""""Why did my call go there?": the inbound decisions for one imagined call, step by step.

Pure, like the engine it narrates: the caller's facts, the time, the digits pressed, the agents'
snapshot and each queue's load go in; an `Explanation` comes out. No call is placed. It follows
the order of `webhooks/voice.py` (greeting, menu, queue, hours, high volume, dial) using the same
engine functions, so what it says is what the webhooks would do with the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from routing_rules import engine
from routing_rules.prompts import menu_prompts, prompt, when_text
from routing_rules.schema import Lang, QueueRules, Rules

Outcome = Literal["dial", "voicemail", "closed", "high_volume_offer", "opt_out", "invalid_choice"]


@dataclass(frozen=True)
class CallInput:
    """The imagined call: who calls, when, and the keys they press (e.g. "1", or "92" + "1")."""

    at: datetime  # aware
    e164: str | None = None
    caller_country: str | None = None  # of the number (telephony.numbers.country_of)
    card_language: str | None = None  # the caller's card, if there is one
    last_agent: str | None = None  # who served this number last (sticky strategy)
    digits: str = ""


@dataclass(frozen=True)
class QueueLoad:
    """A queue's live load as `route_to_queue` measures it for a caller joining now."""

    waiting_calls: int = 0
    position: int = 1
    estimated_wait_seconds: int = 0
    free_agents: int = 0


@dataclass(frozen=True)
class Step:
    title: str
    detail: str
    says: tuple[str, ...] = ()  # prompt texts the caller hears at this step


@dataclass(frozen=True)
class AgentLine:
    """One queue member and why they are (not) offered the call."""

    id: str
    name: str
    status: str
    offered_as: int | None  # 1-based place in the dial order, None if skipped
    why: str


@dataclass(frozen=True)
class Explanation:
    language: Lang
    language_reason: str
    local_time: datetime
    period: engine.Period
    outcome: Outcome
    queue: str | None = None
    open: bool | None = None
    next_open_at: datetime | None = None
    high_volume: bool | None = None
    agents: tuple[AgentLine, ...] = ()
    order: tuple[str, ...] = ()  # engine.rank_agents
    parallel: bool = False
    rings: int | None = None
    ring_seconds: float | None = None
    timeout_seconds: int | None = None
    steps: tuple[Step, ...] = field(default=())

    @property
    def heard(self) -> tuple[str, ...]:
        """Everything the caller hears, in order."""
        return tuple(text for step in self.steps for text in step.says)


def explain_call(
    rules: Rules,
    call: CallInput,
    agents: Sequence[engine.AgentState],
    loads: Mapping[str, QueueLoad],
) -> Explanation:
    """Narrate the decisions for `call`; `agents` is the live snapshot (any order)."""
    steps: list[Step] = []
    lang, reason = _language(rules, call)
    local = call.at.astimezone(engine.zone(rules))
    period = engine.greeting_period(local)
    steps.append(Step("Language", f"{lang}: {reason}"))
    greeting = [_say(rules, lang, f"greeting_{period}", department=rules.department_name(lang))]
    if rules.hotline.recording_consent:
        greeting.append(_say(rules, lang, "recording_consent"))
    steps.append(Step("Greeting", f"{local:%a %Y-%m-%d %H:%M} in {rules.hotline.zone}: {period}",
                      tuple(greeting)))
    steps.append(Step("Menu", f"waits {rules.menu.timeout_seconds} s for a key", _menu(rules, lang)))
    head = Explanation(language=lang, language_reason=reason, local_time=local, period=period,
                       outcome="invalid_choice")

    digits = call.digits.strip()
    if digits[:1] and digits[:1] == rules.menu.language_digit and len(rules.languages) > 1:
        codes = list(rules.languages)
        choice = digits[1:2]
        options = tuple(_say(rules, c, "language_option", digit=str(i)) for i, c in enumerate(codes, 1))
        if choice.isdigit() and 1 <= int(choice) <= len(codes):
            lang = codes[int(choice) - 1]
            head = replace(head, language=lang, language_reason=f"chosen in the language menu (key {choice})")
            steps.append(Step("Language menu", f"key {choice}: {lang}", options))
            steps.append(Step("Menu again", f"in {lang}", _menu(rules, lang)))
        else:
            steps.append(Step("Language menu", f"key {choice or 'none'}: language stays {lang}", options))
        digits = digits[2:]

    key = digits[:1]
    if key and key == rules.menu.opt_out_digit:
        confirmed = digits[1:2] == "1"
        says = [_say(rules, lang, "opt_out_confirm")]
        if confirmed:
            says.append(_say(rules, lang, "opt_out_done"))
        detail = ("confirmed with 1: the number is opted out" if confirmed
                  else "not confirmed: back to the menu")
        steps.append(Step("Opt-out", detail, tuple(says)))
        return replace(head, outcome="opt_out", steps=tuple(steps))

    intro: list[str] = []
    if not key:
        queue: str | None = rules.default_queue()
        steps.append(Step("Choice", f"no key after {rules.menu.repeats} tries: the default queue {queue}",
                          (_say(rules, lang, "no_input"),)))
    elif key == rules.menu.complaint_digit:
        queue = rules.complaints_queue()
        intro.append(_say(rules, lang, "complaint_opened"))
        steps.append(Step("Choice", f"key {key}: a complaint is opened, queue {queue or 'none'}"))
        if queue is None:
            steps.append(Step("Voicemail", "no complaints queue in the rules",
                              tuple(intro) + (_say(rules, lang, "voicemail_prompt"),)))
            return replace(head, outcome="voicemail", steps=tuple(steps))
    else:
        queue = engine.queue_for_digit(rules, key)
        if queue is None:
            steps.append(Step("Choice", f"key {key} leads nowhere: the menu repeats",
                              (_say(rules, lang, "invalid_choice"),)))
            return replace(head, outcome="invalid_choice", steps=tuple(steps))
        steps.append(Step("Choice", f"key {key}: queue {queue}"))
    assert queue is not None
    load = loads.get(queue, QueueLoad())
    return _route(rules, call, replace(head, queue=queue), agents, load, steps, intro)


def _route(rules: Rules, call: CallInput, head: Explanation, agents: Sequence[engine.AgentState],
           load: QueueLoad, steps: list[Step], intro: list[str]) -> Explanation:
    """The queue is chosen: hours, then high volume, then whom to ring and for how long."""
    lang, queue = head.language, head.queue
    assert queue is not None
    q = rules.queues[queue]
    if not engine.is_open(rules, queue, call.at):
        next_open = engine.next_open_at(rules, queue, call.at)
        local_next = next_open.astimezone(engine.zone(rules)) if next_open else None
        def spoken(language: str) -> str:  # worded by whichever language speaks the prompt
            return when_text(language, local_next, head.local_time) if local_next else ""

        says = (*intro, _say(rules, lang, "closed", next_open=spoken), _say(rules, lang, "closed_offer"),
                _say(rules, lang, "voicemail_prompt"))
        opens = f"opens {local_next:%a %Y-%m-%d %H:%M}" if local_next else "does not open within a year"
        steps.append(Step("Hours", f"closed ({_hours_text(q)}); {opens}", says))
        return replace(head, outcome="closed", open=False, next_open_at=next_open, steps=tuple(steps))
    steps.append(Step("Hours", f"open ({_hours_text(q)})"))

    triggered = engine.high_volume_triggered(rules, queue, waiting_calls=load.waiting_calls,
                                             estimated_wait_seconds=load.estimated_wait_seconds,
                                             available_agents=load.free_agents)
    load_text = (f"{load.waiting_calls} waiting, estimated wait {load.estimated_wait_seconds} s, "
                 f"{load.free_agents} agent(s) free")
    lines, order = _agent_lines(rules, queue, agents, engine.CallerContext(call.e164, lang, call.last_agent))
    head = replace(head, open=True, high_volume=triggered, agents=tuple(lines), order=tuple(order),
                   parallel=q.strategy == "ring_all", rings=q.answer_within_rings,
                   ring_seconds=engine.ring_seconds(rules, queue),
                   timeout_seconds=engine.ring_timeout_seconds(rules, queue))
    if triggered:
        minutes = max(1, round(load.estimated_wait_seconds / 60))
        says = (*intro, _say(rules, lang, "all_busy"),
                _say(rules, lang, "queue_position", position=load.position, minutes=minutes),
                _say(rules, lang, "high_volume_offer"))
        steps.append(Step("High volume", f"triggered: {load_text}; the caller is offered voicemail, "
                                         "a callback or a place in line", says))
        return replace(head, outcome="high_volume_offer", steps=tuple(steps))
    hv = "not triggered" if q.high_volume else "no high-volume rule for this queue"
    steps.append(Step("High volume", f"{hv}: {load_text}"))
    steps.append(Step("Agents", f"strategy {q.strategy}; offered in this order: "
                                + (", ".join(order) if order else "nobody")))
    if not order:
        says = (*intro, _say(rules, lang, "all_busy"), _say(rules, lang, "voicemail_prompt"))
        steps.append(Step("Voicemail", "no agent can take the call", says))
        return replace(head, outcome="voicemail", steps=tuple(steps))
    whom = f"all of {', '.join(order[:engine.MAX_PARALLEL])} at once" if head.parallel else order[0]
    target = engine.ring_target(rules, queue)
    timing = (f"{q.answer_within_rings} rings × {head.ring_seconds:g} s − "
              f"{rules.hotline.dial_buffer_seconds} s buffer" if target.kept else
              f"Twilio's shortest: the target, {q.answer_within_rings} rings × {head.ring_seconds:g} s, "
              f"is shorter, so agents ring about {target.rings_about_seconds} s")
    detail = (f"rings {whom} for {head.timeout_seconds} s = {timing}; up to "
              f"{q.max_attempts} attempt(s), then voicemail")
    steps.append(Step("Dial", detail, (*intro, _say(rules, lang, "connecting"))))
    first = order[0]
    agent_lang = (rules.agents[first].languages or [rules.hotline.default_language])[0]
    client = call.e164 or "unknown caller"
    steps.append(Step("Whisper", f"{first} hears, in {agent_lang}, before the caller is connected",
                      (_say(rules, agent_lang, "whisper", client=client,
                            department=q.department_for(agent_lang)),)))
    return replace(head, outcome="dial", steps=tuple(steps))


def _language(rules: Rules, call: CallInput) -> tuple[Lang, str]:
    lang = engine.choose_language(rules, call.card_language, call.caller_country)
    if call.card_language and call.card_language == lang:
        return lang, "the client's card says so"
    if call.caller_country and engine.COUNTRY_LANGUAGE.get(call.caller_country.upper()) == lang:
        return lang, f"the number is from {call.caller_country}"
    return lang, "the hotline's default language"


def _agent_lines(rules: Rules, queue: str, agents: Sequence[engine.AgentState],
                 caller: engine.CallerContext) -> tuple[list[AgentLine], list[str]]:
    order = engine.rank_agents(rules, queue, agents, caller, set())
    place = {agent_id: i for i, agent_id in enumerate(order, 1)}
    by_id = {a.id: a for a in agents}
    q = rules.queues[queue]
    lines = []
    for agent_id in q.agents:
        agent = rules.agents.get(agent_id)
        snap = by_id.get(agent_id)
        status = snap.status if snap else "unknown"
        if agent_id in place:
            spoken = (agent.languages if agent else None) or [rules.hotline.default_language]
            why = "speaks the caller's language" if caller.language in spoken \
                else "does not speak the caller's language (offered after those who do)"
            if q.strategy == "sticky" and caller.last_agent == agent_id:
                why = "served this client last (sticky)"
        elif snap is None:
            why = "not in live state"
        elif status != "available":
            why = f"{status}"
        elif agent and snap.misses >= agent.miss_limit:
            why = f"missed {snap.misses} calls (limit {agent.miss_limit})"
        else:
            why = f"lacks a skill: {', '.join(sorted(set(q.skills) - set(agent.skills if agent else [])))}"
        lines.append(AgentLine(agent_id, agent.name if agent else agent_id, status, place.get(agent_id), why))
    lines.sort(key=lambda line: line.offered_as or len(lines) + 1)  # the dial order first
    return lines, order


def _menu(rules: Rules, lang: str) -> tuple[str, ...]:
    return tuple(p.text for p in menu_prompts(rules, lang))


def _hours_text(q: QueueRules) -> str:
    if not q.hours:
        return "always open"
    return "; ".join(f"{','.join(h.days)} {h.open}-{h.close}" for h in q.hours)


def _say(rules: Rules, lang: str, key: str, **values: object) -> str:
    return prompt(rules, lang, key, **values).text
