"""`/voice/*`: the Twilio webhooks. Thin views: parse Twilio's form, decide, render TwiML.

Every request is signature-checked in `before_request`. A view never answers 500: a fault in a
dependency becomes an apology and a voicemail (see `voice_fault`).
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import redis as redis_lib
import structlog
from flask import Blueprint, Response, abort, has_request_context, request

from recordings import jobs as card_jobs
from routing_rules import engine
from routing_rules.prompts import Prompt, menu_prompts, prompt, when_text
from routing_rules.schema import Lang, Rules
from telephony import numbers
from telephony.twiml import (
    DialStep,
    DialTarget,
    EnqueueStep,
    GatherStep,
    HangupStep,
    LeaveStep,
    Pause,
    RecordStep,
    RedirectStep,
    Script,
    render,
)

from . import caller_cards
from .card_events import encode as encode_card_events
from .current import this_app, this_g, this_request
from .runtime import Runtime
from .signing import SETTINGS_ENVIRON_KEY, Refused, signing_for
from .urls import public_url, quick_signed_url, signed_url

bp = Blueprint("voice", __name__, url_prefix="/voice")
log = structlog.get_logger("hotline.voice")
std_log = logging.getLogger("hotline.voice")

TERMINAL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
MISSED_DIAL_STATUSES = {"no-answer", "busy", "failed"}


def rt() -> Runtime:
    """The app's runtime (read off the app itself, not its proxy: a call asks a dozen times)."""
    return this_app().extensions["hotline"]  # type: ignore[no-any-return]


def twiml(answer: Script | str) -> Response:
    """A TwiML answer: a script rendered now, or one rendered before (`greeting_twiml`)."""
    return Response(answer if isinstance(answer, str) else render(answer), status=200, mimetype="text/xml")


def now_utc() -> datetime:
    return datetime.now(UTC)


@bp.before_request
def check_signature() -> None:
    settings = rt().settings
    if not settings.validate_signatures:
        return
    req = this_request()  # one proxy lookup, not five
    signature = req.headers.get("X-Twilio-Signature", "")
    try:  # the Auth Token, or the shared key the request names (read off the environ: the
        # headers' `get` raises and catches a KeyError for a header that is absent, as it mostly is)
        signing = signing_for(settings, req.environ.get(SETTINGS_ENVIRON_KEY))
    except Refused as refused:
        log.warning("twilio signature rejected", reason=str(refused))
        abort(403)
    params = req.form if req.method == "POST" else {}
    # The URL as Twilio signs it in practice, read straight from the environ: one HMAC. Only a
    # mismatch pays for the exact URL and the library's full check, which also tries the URL
    # with and without its port.
    quick = quick_signed_url(req.environ, settings.public_base_url)
    if signature.isascii():  # (compare_digest refuses non-ASCII text: such a header is left to the full check)
        for validator in signing.validators:
            if hmac.compare_digest(validator.compute_signature(quick, params, signing.algorithm), signature):
                return
    if signature:
        url = signed_url()
        for validator in signing.validators:
            if validator.validate(url, params, signature, signing.algorithm):
                return
    log.warning("twilio signature rejected", key=signing.key)
    abort(403)


# --- the pieces every view uses -------------------------------------------------------------


def say(rules: Rules, lang: str, key: str, **values: Any) -> Prompt:
    """A prompt in the caller's language, ready for TwiML."""
    return playable(prompt(rules, lang, key, **values))


def playable(spoken: Prompt) -> Prompt:
    """Audio paths made absolute: Twilio fetches `<Play>` URLs from outside."""
    if spoken.audio_url and spoken.audio_url.startswith("/"):
        base = rt().settings.public_base_url or request.host_url.rstrip("/")
        spoken = replace(spoken, audio_url=base + spoken.audio_url)
    return spoken


def record_event(call: dict[str, str], kind: str, data: dict[str, Any] | None = None, *,
                 key: str | None = None, agent_id: str | None = None, at: datetime | None = None) -> None:
    """A card event of this call, sent with the request's others when it ends (`send_card`)."""
    if key is None:
        key = redelivery_key(kind, agent_id)
    send_card(card_jobs.event_payload(
        call.get("e164") or call.get("from") or "anonymous",
        kind,
        data or {},
        (at or now_utc()).isoformat(),
        call.get("sid"),
        agent_id,
        call.get("queue") or None,
        key,
    ))


IDEMPOTENCY_ENVIRON_KEY = "HTTP_I_TWILIO_IDEMPOTENCY_TOKEN"  # Twilio's I-Twilio-Idempotency-Token


def redelivery_key(kind: str, agent_id: str | None) -> str | None:
    """The key of an event its webhook names none for, from the request's
    I-Twilio-Idempotency-Token: a request Twilio sends again (a retry after a timeout or a 5xx,
    where connection overrides ask for one) carries the token of the first, so its events get
    the keys of the first one's and land once. The n-th event of a kind in a request is told
    from the others by n. Without the header (or outside a request) None, and `event_payload`
    keys the event by its time, which a redelivery would not repeat."""
    if not has_request_context():
        return None
    token = this_request().environ.get(IDEMPOTENCY_ENVIRON_KEY)
    if not token:
        return None
    counts: dict[tuple[str, str | None], int] = this_g().setdefault("redelivery_counts", {})
    n = counts[kind, agent_id] = counts.get((kind, agent_id), 0) + 1
    return card_jobs.auto_key(token, kind, agent_id, n)


def send_card(payload: dict[str, Any]) -> None:
    """Queue a card payload for the drainer. A webhook's payloads go together, in the order they
    were made: with its last live-state write (`carried_card_events`) or, what is left, in one
    RPUSH after its answer is built (`flush_card_events`)."""
    this_g().setdefault("card_payloads", []).append(payload)


@contextmanager
def carried_card_events() -> Iterator[list[str]]:
    """The card events queued so far, encoded, for the live-state write in this block to carry
    (pushed in its script: one round trip fewer than an RPUSH of their own). If the write
    fails they are queued again, ahead of any later ones, and leave with the request
    (`flush_card_events`: inline into the database when Redis is down), so none is lost."""
    store = this_g()
    payloads = store.pop("card_payloads", [])
    try:
        yield encode_card_events(payloads)
    except BaseException:
        store.card_payloads = payloads + store.pop("card_payloads", [])
        raise


def _send_card_events() -> None:
    """Send what the request queued (once: the list leaves `g`). Never raises: the answer must
    reach Twilio."""
    payloads = this_g().pop("card_payloads", None)
    if payloads:
        try:
            rt().push_card_payloads(payloads)  # inline into the database when Redis is down
        except Exception:  # noqa: BLE001 — Redis and the database both down: say so loudly
            std_log.exception("could not store %d card event(s)", len(payloads))


@bp.teardown_request
def flush_card_events(_error: BaseException | None) -> None:
    """After every answer, the apology included, and after one that could not be finalised:
    Flask tears a request down before the server sends its answer, so Twilio never hears
    of a call before its events are queued. (One hook, not an after-request hook and this as
    its backstop: a webhook paid for both.)"""
    _send_card_events()


def voicemail_script(rules: Rules, lang: str, call_sid: str, queue: str | None, *,
                     intro: str = "voicemail_prompt") -> Script:
    queue_rules = rules.queues.get(queue) if queue else None
    max_length = queue_rules.voicemail.max_length_seconds if queue_rules else 120
    if call_sid:
        try:
            with carried_card_events() as carry:  # e.g. the menu choice and why it is a voicemail
                rt().state.update_call(call_sid, voicemail="1", carry=carry)  # not abandoned: the caller was heard
        except Exception:  # noqa: BLE001 — Redis down: the apology path must still answer
            std_log.warning("could not mark the voicemail on the live call")
    return Script().add(
        say(rules, lang, intro),
        RecordStep(
            action=public_url("voice.voicemail_done", lang=lang),
            max_length=max_length,
            recording_callback=public_url("voice.recording", kind="voicemail", queue=queue or "", lang=lang),
        ),
        HangupStep(),
    )


APOLOGY_EN = "We are sorry, we cannot take your call right now."


def apology_prompt() -> Prompt:
    """The apology in the request's language; plain English when even the rules are unreadable."""
    try:
        rules = rt().rules.current()
        return say(rules, request.args.get("lang") or rules.hotline.default_language, "apology")
    except Exception:  # noqa: BLE001
        return _plain(APOLOGY_EN)


def fault_script() -> Script:
    """Safe TwiML for the context a failed request came from. Twilio allows only some verbs in a
    whisper (Say, Play, Gather, Hangup) and in an `<Enqueue>` waitUrl (no Record), so those get
    their own fallbacks; everywhere else the caller hears the apology and leaves a voicemail."""
    if request.endpoint == "voice.whisper":
        # the agent's leg ends unanswered and the Dial action moves on (next agent, voicemail):
        # bridging without mark_on_call would leave the agent "ringing", free to be claimed again
        return Script().add(HangupStep())
    if request.endpoint in ("voice.wait", "voice.wait_choice"):
        # out of the line; the Enqueue action (queue_result) then takes the voicemail
        return Script().add(apology_prompt(), LeaveStep())
    return apology_script()


def apology_script() -> Script:
    """What a caller hears when something behind us is down: sorry, then a voicemail."""
    try:
        rules = rt().rules.current()
        lang = request.args.get("lang") or rules.hotline.default_language
        script = Script().add(say(rules, lang, "apology"))
        script.steps.extend(voicemail_script(rules, lang, request.form.get("CallSid", ""), None).steps)
        return script
    except Exception:  # noqa: BLE001 — even the rules are unreadable: plain English, still a voicemail
        return Script().add(
            _plain(f"{APOLOGY_EN} Please leave a message after the tone."),
            RecordStep(
                action=public_url("voice.voicemail_done"),
                max_length=120,
                recording_callback=public_url("voice.recording", kind="voicemail"),
            ),
            HangupStep(),
        )


def _plain(text: str) -> Prompt:
    return Prompt(text=text, say_language="en-US", voice=None, audio_url=None)


@bp.errorhandler(Exception)
def voice_fault(error: Exception):
    from werkzeug.exceptions import HTTPException

    if isinstance(error, HTTPException):
        return error
    std_log.exception("voice webhook failed; answering with an apology")
    return twiml(fault_script())


# --- inbound: greeting and menu -------------------------------------------------------------


def load_call(call_sid: str) -> dict[str, str]:
    """The call's live state; only its sid when Redis cannot be read (callers then degrade)."""
    try:
        call = rt().state.get_call(call_sid) or {}
    except redis_lib.RedisError:
        std_log.warning("live state unreadable; continuing with what Twilio sent")
        call = {}
    call.setdefault("sid", call_sid)
    return call


@dataclass(frozen=True)
class Turn:
    """One request of a call: the rules in force, the call's live state, its queue and language."""

    rules: Rules
    call: dict[str, str]
    queue: str
    lang: str


def known_queue(rules: Rules, *names: str | None) -> str:
    """The first name that is a queue in the rules in force (a URL or live call may predate a
    rules change), else the default queue."""
    for name in names:
        if name and name in rules.queues:
            return name
    return rules.default_queue()


def this_turn() -> Turn:
    rules = rt().rules.current()
    call = load_call(request.form.get("CallSid", ""))
    queue = known_queue(rules, request.args.get("queue"), call.get("queue"))
    lang = request.args.get("lang") or call.get("lang") or rules.hotline.default_language
    if lang not in rules.languages:  # a stale URL after a rules change
        lang = rules.hotline.default_language
    return Turn(rules, call, queue, lang)


def menu_script(rules: Rules, lang: str, *, greet: bool, repeat: int = 0, period: str | None = None) -> Script:
    """The menu's Gather; with `greet`, the greeting for `period` (now's part of the day if None)
    and the recording notice before it."""
    steps: list[Any] = []
    if greet:
        period = period or engine.greeting_period(now_utc().astimezone(engine.zone(rules)))
        steps.append(say(rules, lang, f"greeting_{period}", company=rules.company,
                         department=rules.department_name(lang)))
        if rules.hotline.recording_consent:
            steps.append(say(rules, lang, "recording_consent"))
    gather_prompts = [playable(p) for p in menu_prompts(rules, lang)]
    script = Script()
    script.steps.extend(steps)
    script.add(
        GatherStep(action=public_url("voice.menu", lang=lang, repeat=repeat),
                   prompts=gather_prompts, timeout=rules.menu.timeout_seconds),
        RedirectStep(public_url("voice.menu", lang=lang, repeat=repeat, noinput=1)),
    )
    return script


GREETINGS_KEPT = 256  # (rules, language, part of the day, host): a handful; bounded, the Host is the caller's


def greeting_twiml(rules: Rules, lang: str) -> str:
    """The answer to a new call: greeting and menu. It is the same for every caller of one
    language in one part of the day, so it is made once per (rules in force, language, period,
    host the URLs name) and kept per process. (`render` would reuse the TwiML of equal steps,
    but the script was still built every time: prompts formatted, URLs made, steps hashed.)"""
    period = engine.greeting_period(now_utc().astimezone(engine.zone(rules)))
    environ = this_request().environ
    key = (id(rules), lang, period, environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST"),
           environ.get("SERVER_NAME"), environ.get("SERVER_PORT"), environ.get("SCRIPT_NAME", ""))
    kept: dict[tuple[Any, ...], tuple[Rules, str]] = this_app().extensions.setdefault("hotline.greetings", {})
    found = kept.get(key)
    if found is not None and found[0] is rules:  # the same rules object, not one reusing its id
        return found[1]
    if len(kept) >= GREETINGS_KEPT:
        kept.clear()
    text = render(menu_script(rules, lang, greet=True, period=period))  # the period of the key, not a new reading
    kept[key] = (rules, text)
    return text


@bp.post("/incoming")
def incoming():
    runtime = rt()
    rules = runtime.rules.current()
    form = this_request().form
    call_sid = form.get("CallSid", "")
    raw_from = form.get("From", "")
    e164, caller_country = numbers.caller_of(raw_from, rules.hotline.country)
    card = caller_cards.lookup(e164)  # None when unknown or the database is down
    lang = engine.choose_language(rules, card.language if card else None, caller_country)
    call = {
        "sid": call_sid, "from": raw_from, "e164": e164 or "", "to": form.get("To", ""),
        "lang": lang, "client_name": (card.name if card and card.name else "") ,
        "started_at": str(time.time()), "attempt": "0",
    }
    # the arrival goes on the card first: if Redis is down, the apology path still leaves a trace
    record_event(call, "call_arrived", {"from": raw_from, "to": form.get("To", ""), "language": lang},
                 key=f"arrived:{call_sid}")
    with carried_card_events() as carry:
        runtime.state.save_call(call_sid, call, time.time(), carry=carry)
    return twiml(greeting_twiml(rules, lang))


def direct_queue(rules: Rules, digits: str) -> str | None:
    """The queue a menu digit sends the caller straight to its agents (`straight_to_agents`),
    else None."""
    if not digits or digits in (rules.menu.language_digit, rules.menu.opt_out_digit, rules.menu.complaint_digit):
        return None
    queue = engine.queue_for_digit(rules, digits)
    return queue if queue is not None and straight_to_agents(rules, queue, now_utc()) else None


@bp.post("/menu")
def menu():
    runtime = rt()
    rules = runtime.rules.current()
    req = this_request()
    form = req.form
    call_sid = form.get("CallSid", "")
    digits = form.get("Digits", "")
    queue = direct_queue(rules, digits) if req.args.get("lang") else None
    if queue is not None:
        # The common choice: all the dial needs of the call is the caller's number, which
        # Twilio sends again (read as `incoming` read it), and the language is in the URL; the
        # live call is not read first (one round trip fewer). Its fields are set by the dial.
        raw_from = form.get("From", "")
        e164 = numbers.caller_of(raw_from, rules.hotline.country)[0]
        call = {"sid": call_sid, "from": raw_from, "e164": e164 or ""}
        record_event(call, "menu_choice", {"digits": digits, "queue": queue})
        return dial_queue(rules, call, queue, req.args["lang"], Script())
    call = load_call(call_sid)
    lang = request.args.get("lang") or call.get("lang") or rules.hotline.default_language
    repeat = int(request.args.get("repeat", "0") or 0)
    if not digits:
        if repeat + 1 < rules.menu.repeats:
            script = Script().add(say(rules, lang, "no_input"))
            script.steps.extend(menu_script(rules, lang, greet=False, repeat=repeat + 1).steps)
            return twiml(script)
        queue = rules.default_queue()
        record_event(call, "menu_choice", {"digits": "", "queue": queue, "reason": "no input"})
        return route_to_queue(rules, call, queue, lang)
    if digits == rules.menu.language_digit:
        return twiml(language_menu(rules))
    if digits == rules.menu.opt_out_digit:
        return twiml(Script().add(
            GatherStep(action=public_url("voice.opt_out", lang=lang), prompts=[say(rules, lang, "opt_out_confirm")],
                       timeout=rules.menu.timeout_seconds),
            RedirectStep(public_url("voice.menu", lang=lang, repeat=0, noinput=1)),
        ))
    if digits == rules.menu.complaint_digit:
        queue = rules.complaints_queue()
        record_event(call, "menu_choice", {"digits": digits, "choice": "complaint", "queue": queue})
        rt().enqueue(card_jobs.open_complaint_for_call, call.get("e164") or call.get("from") or "anonymous",
                     call_sid, queue, now_utc().isoformat(), job_id=f"complaint-{call_sid}")
        script = Script().add(say(rules, lang, "complaint_opened"))
        if queue:
            return route_to_queue(rules, call, queue, lang, intro=script)
        script.steps.extend(voicemail_script(rules, lang, call_sid, None).steps)
        return twiml(script)
    queue = engine.queue_for_digit(rules, digits)
    if queue is None:
        script = Script().add(say(rules, lang, "invalid_choice"))
        script.steps.extend(menu_script(rules, lang, greet=False, repeat=repeat).steps)
        return twiml(script)
    record_event(call, "menu_choice", {"digits": digits, "queue": queue})
    return route_to_queue(rules, call, queue, lang)


def language_menu(rules: Rules) -> Script:
    options = [say(rules, code, "language_option", digit=str(i)) for i, code in enumerate(rules.languages, start=1)]
    return Script().add(
        GatherStep(action=public_url("voice.language"), prompts=options, timeout=rules.menu.timeout_seconds),
        RedirectStep(public_url("voice.menu", repeat=0, noinput=1)),
    )


@bp.post("/language")
def language():
    rules = rt().rules.current()
    call = load_call(request.form.get("CallSid", ""))
    codes = list(rules.languages)
    digits = request.form.get("Digits", "")
    lang = call.get("lang") or rules.hotline.default_language
    if digits.isdigit() and 1 <= int(digits) <= len(codes):
        new = codes[int(digits) - 1]
        if new != lang:
            rt().state.update_call(call["sid"], lang=new)
            record_event(call, "language_changed", {"from": lang, "to": new})
            rt().enqueue(card_jobs.set_client_language, call.get("e164") or "", new)
        lang = new
    return twiml(menu_script(rules, lang, greet=False))


@bp.post("/opt-out")
def opt_out():
    turn = this_turn()
    rules, call, lang = turn.rules, turn.call, turn.lang
    if request.form.get("Digits") == "1" and call.get("e164"):
        rt().enqueue(card_jobs.opt_out_from_call, call["e164"], call["sid"], now_utc().isoformat(),
                     job_id=f"optout-{call['sid']}")
        script = Script().add(say(rules, lang, "opt_out_done"))
    else:
        script = Script()
    script.steps.extend(menu_script(rules, lang, greet=False).steps)
    return twiml(script)


# --- routing: ring agents within the ring target ----------------------------------------------


def straight_to_agents(rules: Rules, queue: str, now: datetime) -> bool:
    """The queue is open and has no offer to make first: its callers go straight to its agents."""
    return rules.queues[queue].high_volume is None and engine.is_open(rules, queue, now)


def queue_fields(queue: str, lang: str) -> dict[str, str]:
    """What a call going to a queue sets on its live state: a new queue restarts the attempts."""
    return {"queue": queue, "lang": lang, "attempt": "0"}


def dial_queue(rules: Rules, call: dict[str, str], queue: str, lang: str, script: Script):
    """Straight to the queue's agents: the call's queue fields are set in the dial's own step."""
    call["queue"] = queue
    script.add(say(rules, lang, "connecting"))
    script.steps.extend(dial_next(rules, call, queue, lang, fields=queue_fields(queue, lang)).steps)
    return twiml(script)


def route_to_queue(rules: Rules, call: dict[str, str], queue: str, lang: str, *, intro: Script | None = None):
    runtime = rt()
    now = now_utc()
    script = intro or Script()
    if straight_to_agents(rules, queue, now):
        return dial_queue(rules, call, queue, lang, script)
    call["queue"] = queue
    runtime.state.update_call(call["sid"], **queue_fields(queue, lang))
    is_open = engine.is_open(rules, queue, now)
    if not is_open:
        next_open = engine.next_open_at(rules, queue, now)
        local_now = now.astimezone(engine.zone(rules))
        opens = next_open.astimezone(engine.zone(rules)) if next_open else None

        def spoken(language: str) -> str:  # in the words of whichever language speaks the prompt
            return when_text(language, opens, local_now) if opens else ""
        record_event(call, "closed", {"queue": queue, "next_open_at": next_open.isoformat() if next_open else None})
        script.add(GatherStep(
            action=public_url("voice.offer", queue=queue, lang=lang, closed=1),
            prompts=[say(rules, lang, "closed", next_open=spoken), say(rules, lang, "closed_offer")],
            timeout=rules.menu.timeout_seconds,
        ))
        script.steps.extend(voicemail_script(rules, lang, call["sid"], queue).steps)
        return twiml(script)
    agents = runtime.state.snapshot(rules.queues[queue].agents, time.time())
    position, wait_seconds, free = line_status(rules, queue, call["sid"], time.time(), agents)
    waiting = runtime.state.line_length(queue)
    if engine.high_volume_triggered(rules, queue, waiting_calls=waiting, estimated_wait_seconds=wait_seconds,
                                    available_agents=free):
        record_event(call, "high_volume_offer", {"queue": queue, "waiting": waiting, "position": position,
                                                 "estimated_wait_seconds": wait_seconds, "free_agents": free})
        runtime.state.update_call(call["sid"], queued_at=str(time.time()))
        script.steps.extend(offer_script(rules, lang, queue, position, wait_seconds).steps)
        return twiml(script)
    script.add(say(rules, lang, "connecting"))
    script.steps.extend(dial_next(rules, call, queue, lang, agents=agents).steps)
    return twiml(script)


def dial_next(rules: Rules, call: dict[str, str], queue: str, lang: str, *, fields: dict[str, str] | None = None,
              agents: list[engine.AgentSnapshot] | None = None) -> Script:
    """Claim the next agent(s) for this call and dial them, or go to voicemail. `fields` are
    set on the call first (in the same step); `agents` is a snapshot the caller just took."""
    runtime = rt()
    state = runtime.state
    now = time.time()
    queue_rules = rules.queues[queue]
    e164 = call.get("e164") or None
    (attempt, tried, last_agent), fresh = state.prepare_dial(
        call["sid"], e164, queue_rules.agents if agents is None else (), now, fields)
    agents = fresh if agents is None else agents
    caller = engine.CallerContext(e164=e164, language=cast(Lang, lang), last_agent=last_agent)
    plan = engine.decide_dial(rules, queue, agents, caller, attempt, tried)
    if isinstance(plan, engine.GoToVoicemail) and plan.reason == "no_agent_available" \
            and queue_rules.high_volume is not None and set(queue_rules.agents) - tried:
        # agents still to try are busy (e.g. a new arrival took the one who freed up): back to
        # the caller's original place in line rather than a voicemail
        return enqueue_script(rules, call, queue, lang)
    if isinstance(plan, engine.GoToVoicemail):
        record_event(call, "routed_to_voicemail", {"queue": queue, "reason": plan.reason, "attempt": attempt})
        return voicemail_script(rules, lang, call["sid"], queue, intro="all_busy")
    claimed = claim_for_dial(rules, plan, call["sid"], now)
    looks = 0
    while not claimed and looks < LOST_RACE_LOOKS and (queue_rules.high_volume is None
                                                      or not state.line_length(queue)):
        # Other calls took every candidate between our read and our claim (a loaded machine
        # paused this request meanwhile): decide again on a fresh read of the queue rather
        # than send the caller away while agents are free. Nothing was claimed or counted.
        # Where callers wait in the queue's line, an agent who frees up is theirs first: this
        # caller joins the line below.
        looks += 1
        now = time.time()
        again = engine.decide_dial(rules, queue, state.snapshot(queue_rules.agents, now), caller, attempt, tried)
        if isinstance(again, engine.GoToVoicemail):
            break
        plan = again
        claimed = claim_for_dial(rules, plan, call["sid"], now)
    if not claimed and queue_rules.high_volume is not None:  # lost a race for the agent: wait in line
        return enqueue_script(rules, call, queue, lang)
    if not claimed:
        record_event(call, "routed_to_voicemail", {"queue": queue, "reason": "no agent free", "attempt": attempt})
        return voicemail_script(rules, lang, call["sid"], queue, intro="all_busy")
    targets = [
        DialTarget(
            endpoint=rules.agents[a].endpoint,
            whisper_url=public_url("voice.whisper", call=call["sid"], agent=a, lang=lang, ring=",".join(claimed),
                                   e164=call.get("e164") or None),
            status_callback=public_url("voice.agent_leg", call=call["sid"], agent=a, attempt=attempt),
        )
        for a in claimed
    ]
    caller_id = call.get("from") if (call.get("e164") or "").startswith("+") else None
    # one agent rung: the action names them, when the dial began and the caller's number, all
    # the end of their talk needs (`dial_result` then reads nothing first)
    only = claimed[0] if len(claimed) == 1 else None
    return Script().add(DialStep(
        targets=targets,
        action=public_url("voice.dial_result", queue=queue, lang=lang, agent=only, at=repr(now) if only else None,
                          e164=call.get("e164") or None),
        timeout=plan.timeout_seconds,
        recording_callback=public_url("voice.recording", kind="call", queue=queue),
        caller_id=caller_id,
        ring_tone=engine.ring_tone(rules),
    ))


LOST_RACE_LOOKS = 2  # fresh reads of a queue after every candidate was claimed by other calls


def claim_for_dial(rules: Rules, plan: engine.DialPlan, call_sid: str, now: float) -> list[str]:
    """Claim the plan's agent (or a ring-all's agents) for this call, as of `now`; the
    request's card events so far ride with the claim."""
    count = min(len(plan.candidates), engine.MAX_PARALLEL) if plan.parallel else 1
    ring_until = now + plan.timeout_seconds + rules.hotline.dial_buffer_seconds + 30
    with carried_card_events() as carry:  # the menu choice, on the way to an agent
        return rt().state.claim_agents(plan.candidates, call_sid, count, now, ring_until, dial=True, carry=carry)


def whisper_language(rules: Rules, agent_id: str) -> str:
    """The agent's first language Twilio can speak: a whisper names a client, so it is never audio."""
    agent = rules.agents.get(agent_id)
    spoken = [lang for lang in (agent.languages if agent else []) if rules.languages[lang].say_language]
    return spoken[0] if spoken else rules.hotline.default_language


@bp.post("/whisper")
def whisper():
    """Requested on the agent's leg when the agent answers: mark them on the call, name the client."""
    runtime = rt()
    rules = runtime.rules.current()
    args = this_request().args
    parent_sid = args.get("call", "")
    agent_id = args.get("agent", "")
    ring = args.get("ring")
    if ring is not None:  # the dial named whom it rang and the caller's number: one step
        others, e164 = ring.split(","), args.get("e164")
    else:  # a URL made before dials named them (a call in flight over an upgrade): read them
        found, claimed = runtime.state.call_and_claimed(parent_sid)
        others, e164 = list(claimed), (found or {}).get("e164")
    # also frees the rest of a ring-all, notes who answered, and makes them the number's last agent
    held, found = runtime.state.answer(agent_id, parent_sid, time.time(), ring=others, e164=e164 or None)
    if not held:
        # The state does not hold this agent for this call: another agent of a ring-all took it
        # first (Twilio still rings the others while that whisper plays), or a supervisor set the
        # agent away while the phone rang. Connecting them anyway would book them twice; a hangup
        # leaves the caller to whoever holds the call, or to the Dial action's next step.
        log.info("whisper refused: agent not held for the call", agent=agent_id, call=parent_sid)
        return twiml(Script().add(HangupStep()))
    call = {"sid": parent_sid, **(found or {})}
    agent_lang = whisper_language(rules, agent_id)
    client = call.get("client_name") or call.get("e164") or call.get("from") or "unknown caller"
    queue_name = call.get("queue") or ""
    department = rules.queues[queue_name].department_for(agent_lang) if queue_name in rules.queues else ""
    return twiml(Script().add(say(rules, agent_lang, "whisper", client=client, department=department)))


def ring_facts(call: dict[str, str], agent_id: str, until: float) -> float:
    """Seconds the agent's phone rang, by Twilio's clock when its leg callbacks came, else ours."""
    started = call.get(f"ring_{agent_id}") or call.get("dial_started_at")
    return round(max(0.0, until - float(started or until)), 1)


def record_answer(rules: Rules, call: dict[str, str], agent_id: str, seconds: float) -> None:
    queue = known_queue(rules, call.get("queue"))
    rings = engine.rings_for(seconds, rules, queue)
    target = rules.queues[queue].answer_within_rings
    record_event(call, "call_answered", {
        "agent": agent_id, "rings": rings, "seconds": seconds,
        "within_target": rings <= target, "target_rings": target,
    }, agent_id=agent_id, key=f"answered:{call['sid']}")


@bp.post("/agent-leg")
def agent_leg():
    """Status callbacks of an agent's leg: Twilio's own ringing and answer times give the rings."""
    runtime = rt()
    rules = runtime.rules.current()
    parent_sid = request.args.get("call", "")
    agent_id = request.args.get("agent", "")
    status = request.form.get("CallStatus", "")
    call = load_call(parent_sid)
    at = card_jobs.twilio_timestamp(request.form.get("Timestamp")).timestamp()
    if status == "ringing":
        runtime.state.update_call(parent_sid, **{f"ring_{agent_id}": str(at)})
    elif status == "in-progress":
        record_answer(rules, call, agent_id, ring_facts(call, agent_id, at))
    elif status in MISSED_DIAL_STATUSES or status == "completed":
        runtime.state.update_call(parent_sid, **{f"ring_end_{agent_id}": str(at)})
    return Response(status=204)


@bp.post("/dial-result")
def dial_result():
    runtime = rt()
    rules = runtime.rules.current()
    state = runtime.state
    req = this_request()
    form, args = req.form, req.args
    call_sid = form.get("CallSid", "")
    status = form.get("DialCallStatus", "failed")
    talked = form.get("DialCallDuration", "")
    duration = whole_seconds(talked)  # never fails: the agent must be freed
    now = time.time()
    rung, dialled_at = args.get("agent"), args.get("at")
    if status in ("completed", "answered") and rung and is_number(dialled_at) and talked.isdigit():
        # the one agent rung talked: all the end of their talk needs is in the URL and in
        # Twilio's fields (they answered `duration` seconds ago), so nothing is read first
        call = {"sid": call_sid, "from": form.get("From", ""), "e164": args.get("e164") or "",
                "dial_started_at": dialled_at}
        queue = known_queue(rules, args.get("queue"))
        call["queue"] = queue
        lang = args.get("lang") or rules.hotline.default_language
        return talk_ended(rules, call, rung, now - duration, duration, queue, lang, now)
    call = load_call(call_sid)
    queue = known_queue(rules, request.args.get("queue"), call.get("queue"))
    lang = request.args.get("lang") or call.get("lang") or rules.hotline.default_language
    claimed = [a for a in (call.get("claimed") or "").split(",") if a]
    answered_by = call.get("answered_by") or ""
    started = float(call.get("dial_started_at") or now)
    seconds = round(max(0.0, now - started), 1)
    attempt = int(call.get("attempt") or 1)
    if status in ("completed", "answered") and answered_by:
        answered_at = float(call.get("answered_at") or now)
        return talk_ended(rules, call, answered_by, answered_at, duration, queue, lang, now)
    if status == "canceled":  # the caller hung up while the agent rang: not the agent's miss
        state.release_unanswered(call_sid, None, now)
        record_event(call, "call_abandoned", {"queue": queue, "while": "ringing", "seconds": seconds},
                     key=f"abandoned:{call_sid}")
        return twiml(Script().add(HangupStep()))
    outcome = status if status in MISSED_DIAL_STATUSES else "failed"
    for agent_id in claimed:
        agent = rules.agents.get(agent_id)
        new_status, misses = state.release_missed(agent_id, call_sid, now, agent.miss_limit if agent else 3)
        rang = ring_facts(call, agent_id, float(call.get(f"ring_end_{agent_id}") or now))
        record_event(call, "agent_rung", {
            "agent": agent_id, "outcome": outcome, "seconds": rang,
            "rings": engine.rings_for(rang, rules, queue), "attempt": attempt,
            "misses": misses, "agent_status": new_status,
        }, agent_id=agent_id, key=f"rung:{call_sid}:{attempt}:{agent_id}")
    next_step = engine.after_dial(rules, queue, outcome, attempt)
    if next_step == "next":
        return twiml(dial_next(rules, call, queue, lang))
    record_event(call, "routed_to_voicemail", {"queue": queue, "reason": "no agent answered", "attempt": attempt})
    return twiml(voicemail_script(rules, lang, call_sid, queue, intro="all_busy"))


def talk_ended(rules: Rules, call: dict[str, str], agent_id: str, answered_at: float, duration: int, queue: str,
               lang: str, now: float) -> Response:
    """An agent's talk with the caller ended: the agent is freed (or wraps up), the handle time
    kept and the call's answer and handling go on the card, in one step; then the survey or a
    hangup."""
    agent = rules.agents.get(agent_id)
    wrap_up = agent.wrap_up_seconds if agent else 0
    # normally written from the agent leg's "answered" callback; the same key makes this a no-op
    record_answer(rules, call, agent_id, ring_facts(call, agent_id, answered_at))
    record_event(call, "call_handled", {"agent": agent_id, "duration": duration},
                 agent_id=agent_id, key=f"handled:{call['sid']}")
    with carried_card_events() as carry:  # the agent is freed, the handle time kept, the events sent: one step
        _, waiting = rt().state.release_after_talk(agent_id, call["sid"], now, wrap_up, queue, duration, carry=carry)
    after_call_hook(queue, waiting, wrap_up)
    script = Script()
    if rules.queues[queue].survey:
        script.add(RedirectStep(public_url("voice.survey", lang=lang)))
    else:
        script.add(HangupStep())
    return twiml(script)


def is_number(value: str | None) -> bool:
    """A finite number as text (a URL's `at`)."""
    try:
        return value is not None and math.isfinite(float(value))
    except ValueError:
        return False


def whole_seconds(value: str | None) -> int:
    """A duration Twilio sends in whole seconds; 0 when it is missing or malformed."""
    return int(value) if value and value.isdigit() else 0


def after_call_hook(queue: str, waiting: int, wrap_up_seconds: int = 0) -> None:
    """An agent has freed up (now, or when wrap-up ends): wake what waits for one."""
    from datetime import timedelta

    from telephony import dispatch

    if waiting == 0:
        return  # nobody waits; callbacks not yet due are picked up by the periodic tick
    try:
        if wrap_up_seconds > 0:
            rt().jobs.enqueue_in(timedelta(seconds=wrap_up_seconds), dispatch.agent_freed, queue)
        else:
            rt().enqueue(dispatch.agent_freed, queue)
    except Exception:  # noqa: BLE001 — never fail the caller's webhook for this; the periodic tick catches up
        std_log.exception("could not schedule dispatch")


# --- voicemail, recordings, status ----------------------------------------------------------


@bp.post("/voicemail")
def voicemail():
    turn = this_turn()
    rules, call, lang = turn.rules, turn.call, turn.lang
    queue = request.args.get("queue") or call.get("queue") or None
    return twiml(voicemail_script(rules, lang, call["sid"], queue))


@bp.post("/voicemail-done")
def voicemail_done():
    rules = rt().rules.current()
    lang = request.args.get("lang") or rules.hotline.default_language
    if lang not in rules.languages:
        lang = rules.hotline.default_language
    return twiml(Script().add(say(rules, lang, "voicemail_thanks"), HangupStep()))


@bp.post("/recording")
def recording():
    runtime = rt()
    form = request.form.to_dict()
    kind = request.args.get("kind", "call")
    queue = request.args.get("queue") or None
    call = load_call(form.get("CallSid", ""))
    rules = runtime.rules.current()
    respond = rules.queues[queue].voicemail.respond_within_minutes if queue in rules.queues else \
        rules.default_voicemail_minutes()
    caller = call.get("e164") or call.get("from") or request.args.get("client") \
        or numbers.normalize(form.get("From"), rules.hotline.country) or form.get("From") or None
    send_card(card_jobs.recording_payload(
        form, kind, queue, respond, request.args.get("lang") or call.get("lang"), caller, now_utc().isoformat()))
    return Response(status=204)


@bp.post("/status")
def status():
    form = this_request().form.to_dict()
    call_sid = form.get("CallSid", "")
    send_card(card_jobs.call_status_payload(form))
    if form.get("CallStatus") in TERMINAL_STATUSES:
        direction = form.get("Direction", "inbound")
        if direction == "inbound":
            call_ended(call_sid)
        elif direction == "outbound-api":  # a leg the dialler placed: a callback's agent leg may need settling
            from telephony import dispatch

            if form["CallStatus"] in dispatch.AGENT_LEG_UNBRIDGED:  # an answered leg is its bridge's to settle
                rt().enqueue(dispatch.agent_leg_ended, call_sid, form["CallStatus"])
            else:  # a callback's agent is on its call until the bridge's result: look again if it never comes
                leg = rt().state.get_call(call_sid) or {}
                if leg.get("agent"):  # held under the dispatcher's dial id, or (their own call) the leg
                    strand_check(leg["agent"], leg.get("pseudo") or call_sid)
    return Response(status=204)


def call_ended(call_sid: str) -> None:
    """The caller's leg ended: free any agent still reserved for it, leave any waiting line.

    A caller who hung up before an agent answered and without leaving a voicemail abandoned
    the call; that goes on the card whether they were in the menu, the offer or the line.
    """
    state = rt().state
    with carried_card_events() as carry:  # the status callback's own event
        ended = state.end_call(call_sid, carry=carry)  # once per call, whatever the callbacks' order or repeats
    if ended is None:
        return
    call, claimed = ended
    now = time.time()
    # agents still ringing for it; the one who answered is not (nothing to do: no round trip)
    state.release_unanswered(call_sid, call.get("answered_by") or None, now, claimed=claimed)
    if call.get("answered_by") and not call.get("handle_kept"):
        strand_check(call["answered_by"], call_sid)
    call.setdefault("sid", call_sid)
    waiting_in = call.get("waiting_in")
    if waiting_in:
        state.leave_line(waiting_in, f"call:{call_sid}")
    if call.get("answered_by") or call.get("voicemail") or call.get("callback_booked"):
        return
    stage = "waiting" if waiting_in else ("ringing" if call.get("claimed") else
                                          ("offer" if call.get("queued_at") else "menu"))
    record_event(call, "call_abandoned", {"queue": waiting_in or call.get("queue") or None, "while": stage,
                                          "seconds": round(now - float(call.get("started_at") or now), 1)},
                 key=f"abandoned:{call_sid}")


def strand_check(agent_id: str, call_sid: str) -> None:
    """The Dial action that frees the agent who answered normally comes before the caller's
    status callback; when it has not, look again a minute later (`release_stranded_agent`)."""
    from datetime import timedelta

    from telephony import dispatch

    try:
        rt().jobs.enqueue_in(timedelta(seconds=dispatch.STRANDED_AFTER_SECONDS), dispatch.release_stranded_agent,
                             agent_id, call_sid)
    except Exception:  # noqa: BLE001 — never fail the status callback for this; a person can still free them
        std_log.exception("could not schedule the stranded-agent check for %s", call_sid)


@bp.post("/fallback")
def fallback():
    """Twilio's Fallback URL: our primary answer failed; apologise and take a message."""
    log.warning("fallback requested", error_code=request.form.get("ErrorCode"), error_url=request.form.get("ErrorUrl"))
    return twiml(apology_script())


@bp.post("/survey")
def survey():
    turn = this_turn()
    rules, call, lang = turn.rules, turn.call, turn.lang
    digits = request.form.get("Digits")
    if digits is None:
        return twiml(Script().add(
            GatherStep(action=public_url("voice.survey", lang=lang), prompts=[say(rules, lang, "survey_question")],
                       timeout=rules.menu.timeout_seconds),
            HangupStep(),
        ))
    if digits in {"1", "2", "3", "4", "5"}:
        record_event(call, "survey_score", {"score": int(digits), "queue": call.get("queue"),
                                            "agent": call.get("answered_by")},
                     key=f"survey:{call['sid']}", agent_id=call.get("answered_by") or None)
    return twiml(Script().add(say(rules, lang, "survey_thanks"), HangupStep()))



# --- outbound: the agent's leg of a guarded call ----------------------------------------------


@bp.post("/outbound-bridge")
def outbound_bridge():
    """The agent answered the leg the dialler placed: re-check the guard, whisper, dial the client."""
    from .api import dialler

    runtime = rt()
    rules = runtime.rules.current()
    client = request.args.get("client", "")
    agent_id = request.args.get("agent", "")
    purpose = request.args.get("purpose", "agent_call")
    callback = request.args.get("callback")
    agent_lang = whisper_language(rules, agent_id)
    guard = dialler()
    verdict = guard.check_at_bridge(client, now_utc(), purpose=purpose)
    if not verdict.allowed:  # an opt-out or the window's end landed while the agent's phone rang
        from telephony import dispatch

        callback_id = int(callback) if callback and callback.isdigit() else None
        leg = request.form.get("CallSid", "")
        guard.log_blocked_at_bridge(client, verdict, purpose=purpose, agent_id=agent_id,
                                        callback_id=callback_id, call_sid=leg or None)
        if callback_id is not None:
            runtime.enqueue(dispatch.callback_blocked_at_bridge, callback_id, agent_id, leg,
                            verdict.reason, verdict.next_allowed_at)
        return twiml(Script().add(say(rules, agent_lang, "outbound_blocked", reason=verdict.reason or ""), HangupStep()))
    leg = request.form.get("CallSid", "")
    if callback and callback.isdigit():
        hold_callback_agent(runtime, agent_id, int(callback), leg)
    elif agent_id in rules.agents and leg:
        hold_calling_agent(runtime, agent_id, leg)
    key = "callback_whisper" if callback else "outbound_whisper"
    return twiml(Script().add(
        say(rules, agent_lang, key, client=client),
        DialStep(
            targets=[DialTarget(endpoint=client)],
            action=public_url("voice.outbound_result", client=client, agent=agent_id, callback=callback or ""),
            timeout=engine.ring_timeout_seconds(rules, rules.default_queue()) + 20,
            # Twilio's recording callback names no client: the URL does, or it lands on no card
            recording_callback=public_url("voice.recording", kind="call", client=client),
            caller_id=rules.hotline.numbers[0],
        ),
    ))


def hold_callback_agent(runtime: Runtime, agent_id: str, callback_id: int, leg: str) -> None:
    """The agent answered a callback's leg and the bridge dials the client: the agent is on the
    call from now until its result frees them (`dispatch.outbound_finished`), no longer only
    held for the ring, a hold that lapses (`dispatch.CALLBACK_HOLD_SECONDS`) and would have
    offered them another call in the middle of this one. A repeated request changes nothing."""
    from telephony import dispatch

    state = runtime.state
    now = time.time()
    hold = dispatch.callback_hold(state, agent_id, callback_id, state.get_call(leg) or {}, now)
    if hold:
        state.mark_on_call(agent_id, hold, now)


def hold_calling_agent(runtime: Runtime, agent_id: str, leg: str) -> None:
    """An agent's own call (click-to-call) reaches its bridge: an available agent is put on the
    call, held under its leg, so no caller is offered to them during it; the bridge's result
    frees them (`dispatch.outbound_finished` releases the leg's hold), and the leg's state names
    them for the stranded-agent check in case that result never comes. An agent who is not
    available (away, in wrap-up, ringing for a caller) is left as they are."""
    state = runtime.state
    now = time.time()
    if state.claim_agents([agent_id], leg, 1, now, now + CALLING_AGENT_CLAIM_SECONDS):
        state.mark_on_call(agent_id, leg, now)
        state.save_call(leg, {"agent": agent_id}, now)


CALLING_AGENT_CLAIM_SECONDS = 60  # the claim's ring hold, replaced at once by on_call


@bp.post("/outbound-result")
def outbound_result():
    """The client leg of an outbound call ended: free the agent, settle the callback."""
    from telephony import dispatch

    runtime = rt()
    status = request.form.get("DialCallStatus", "failed")
    agent_id = request.args.get("agent", "")
    callback = request.args.get("callback") or None
    runtime.enqueue(dispatch.outbound_finished, request.form.get("CallSid", ""), request.args.get("client", ""),
                    agent_id, status, int(request.form.get("DialCallDuration") or 0),
                    int(callback) if callback else None)
    return twiml(Script().add(HangupStep()))


# --- high volume: the offer, the waiting line, callbacks ----------------------------------------


def line_status(rules: Rules, queue: str, call_sid: str, now: float,
                agents: list[engine.AgentSnapshot] | None = None) -> tuple[int, int, int]:
    """(position if this caller joined now or already waits, estimated wait s, free agents)."""
    state = rt().state
    if agents is None:
        agents = state.snapshot(rules.queues[queue].agents, now)
    free = sum(1 for a in agents if a.status == "available")
    on_duty = sum(1 for a in agents if a.status not in ("away", "offline"))
    position = state.position(queue, f"call:{call_sid}") or state.line_length(queue) + 1
    ahead = position - free  # callers a free agent will not take at once
    wait = state.estimated_wait_seconds(queue, ahead, on_duty) if ahead > 0 else 0
    return position, wait, free


def offer_script(rules: Rules, lang: str, queue: str, position: int, wait_seconds: int) -> Script:
    hv = rules.queues[queue].high_volume
    minutes = max(1, round(wait_seconds / 60))
    prompts: list[Any] = [say(rules, lang, "all_busy"),
                          say(rules, lang, "queue_position", position=position, minutes=minutes)]
    if hv is None or hv.offer_voicemail or hv.offer_callback:
        prompts.append(say(rules, lang, "high_volume_offer"))
    return Script().add(
        GatherStep(action=public_url("voice.offer", queue=queue, lang=lang), prompts=prompts,
                   timeout=rules.menu.timeout_seconds),
        RedirectStep(public_url("voice.offer", queue=queue, lang=lang, stay=1)),
    )


@bp.post("/offer")
def offer():
    turn = this_turn()
    rules, call, queue, lang = turn.rules, turn.call, turn.queue, turn.lang
    digits = request.form.get("Digits", "")
    if request.args.get("closed") and digits not in ("1", "2"):
        digits = "1"  # closed: nobody to wait for, so no answer means a voicemail
    return twiml(choose_after_offer(rules, call, queue, lang, digits))


def choose_after_offer(rules: Rules, call: dict[str, str], queue: str, lang: str, digits: str) -> Script:
    hv = rules.queues[queue].high_volume
    if digits == "1" and (hv is None or hv.offer_voicemail):
        record_event(call, "offer_choice", {"queue": queue, "choice": "voicemail"})
        return voicemail_script(rules, lang, call["sid"], queue)
    if digits == "2" and (hv is None or hv.offer_callback) and call.get("e164"):
        record_event(call, "offer_choice", {"queue": queue, "choice": "callback"})
        return callback_number_script(rules, lang, call, queue)
    return enqueue_script(rules, call, queue, lang)


def enqueue_script(rules: Rules, call: dict[str, str], queue: str, lang: str) -> Script:
    state = rt().state
    now = time.time()
    since = float(call.get("queued_at") or now)
    state.join_line(queue, f"call:{call['sid']}", since)
    state.update_call(call["sid"], waiting_in=queue, queued_at=str(since))
    record_event(call, "queued", {"queue": queue, "position": state.position(queue, f"call:{call['sid']}")},
                 key=f"queued:{call['sid']}")
    return Script().add(EnqueueStep(
        queue_name=queue,
        wait_url=public_url("voice.wait", queue=queue, lang=lang),
        action=public_url("voice.queue_result", queue=queue, lang=lang),
    ))


@bp.post("/wait")
def wait():
    """The hold loop: position, estimated wait and the offer, repeated every few seconds."""
    rules = rt().rules.current()
    call_sid = request.form.get("CallSid", "")
    call = load_call(call_sid)
    queue = known_queue(rules, request.args.get("queue"), call.get("queue"))
    lang = request.args.get("lang") or call.get("lang") or rules.hotline.default_language
    position, wait_seconds, _ = line_status(rules, queue, call_sid, time.time())
    hv = rules.queues[queue].high_volume
    every = hv.announce_every_seconds if hv else 30
    return twiml(Script().add(
        GatherStep(
            action=public_url("voice.wait_choice", queue=queue, lang=lang),
            prompts=[say(rules, lang, "queue_position", position=position,
                         minutes=max(1, round(wait_seconds / 60))),
                     say(rules, lang, "high_volume_offer"), Pause(every)],
            timeout=1,
        ),
    ))


@bp.post("/wait-choice")
def wait_choice():
    """A key pressed while waiting: 1 voicemail, 2 callback (the caller leaves the hold loop)."""
    call_sid = request.form.get("CallSid", "")
    digits = request.form.get("Digits", "")
    if digits in ("1", "2"):
        rt().state.update_call(call_sid, choice=digits)
        return twiml(Script().add(LeaveStep()))
    return twiml(Script().add(RedirectStep(public_url("voice.wait", **request.args))))


@bp.post("/queue-result")
def queue_result():
    turn = this_turn()
    rules, call, queue, lang = turn.rules, turn.call, turn.queue, turn.lang
    result = request.form.get("QueueResult", "")
    if result == "leave":
        rt().state.leave_line(queue, f"call:{call['sid']}")
        rt().state.update_call(call["sid"], waiting_in="")
        choice = call.get("choice")
        if choice is None:  # left without a choice: the hold loop failed (fault_script), no way back
            return twiml(voicemail_script(rules, lang, call["sid"], queue))
        return twiml(choose_after_offer(rules, call, queue, lang, choice))
    if result in ("hangup", "error", "system-error", "queue-full"):
        call_ended(call["sid"])
        if result != "hangup":
            return twiml(voicemail_script(rules, lang, call["sid"], queue, intro="apology"))
    return twiml(Script().add(HangupStep()))


@bp.post("/line-connect")
def line_connect():
    """A waiting caller whose turn came (REST redirect from the dispatcher): ring agents now."""
    rules = rt().rules.current()
    call = load_call(request.form.get("CallSid", ""))
    queue = known_queue(rules, request.args.get("queue"), call.get("queue"))
    lang = call.get("lang") or rules.hotline.default_language
    call["queue"] = queue
    waited = time.time() - float(call.get("queued_at") or time.time())
    record_event(call, "dequeued", {"queue": queue, "waited_seconds": round(waited, 1)})
    script = Script().add(say(rules, lang, "connecting"))
    script.steps.extend(dial_next(rules, call, queue, lang, fields={"waiting_in": "", "attempt": "0"}).steps)
    return twiml(script)


def callback_number_script(rules: Rules, lang: str, call: dict[str, str], queue: str) -> Script:
    spoken = " ".join(call.get("e164", ""))
    return Script().add(
        GatherStep(action=public_url("voice.callback_number", queue=queue, lang=lang),
                   prompts=[say(rules, lang, "callback_confirm_number", number=spoken)],
                   timeout=rules.menu.timeout_seconds),
        RedirectStep(public_url("voice.callback_number", queue=queue, lang=lang, confirm=1)),
    )


@bp.post("/callback-number")
def callback_number():
    turn = this_turn()
    rules, call, queue, lang = turn.rules, turn.call, turn.queue, turn.lang
    digits = request.form.get("Digits", "")
    if request.args.get("entered"):
        e164 = numbers.normalize(digits, rules.hotline.country) if digits else None
        if not e164:
            return twiml(Script().add(say(rules, lang, "invalid_choice")).add(
                *callback_number_script(rules, lang, call, queue).steps))
        rt().state.update_call(call["sid"], callback_number=e164)
    elif digits == "2":
        return twiml(Script().add(
            GatherStep(action=public_url("voice.callback_number", queue=queue, lang=lang, entered=1),
                       prompts=[say(rules, lang, "callback_enter_number")], num_digits=None,
                       timeout=10, finish_on_key="#"),
            RedirectStep(public_url("voice.callback_number", queue=queue, lang=lang, confirm=1)),
        ))
    else:
        rt().state.update_call(call["sid"], callback_number=call.get("e164", ""))
    presets = rules.queues[queue].callback.time_presets
    if len(presets) > 1:
        return twiml(Script().add(
            GatherStep(action=public_url("voice.callback_time", queue=queue, lang=lang),
                       prompts=[say(rules, lang, "callback_time", queue=queue)],
                       timeout=rules.menu.timeout_seconds),
            RedirectStep(public_url("voice.callback_time", queue=queue, lang=lang, default=1)),
        ))
    return twiml(book_callback(rules, call, queue, lang, None))


@bp.post("/callback-time")
def callback_time():
    turn = this_turn()
    rules, call, queue, lang = turn.rules, turn.call, turn.queue, turn.lang
    digits = request.form.get("Digits", "")
    presets = rules.queues[queue].callback.time_presets
    choice = presets[int(digits) - 1] if digits.isdigit() and 1 <= int(digits) <= len(presets) else None
    return twiml(book_callback(rules, call, queue, lang, choice))


def book_callback(rules: Rules, call: dict[str, str], queue: str, lang: str, preset: str | None) -> Script:
    from telephony import dispatch

    state = rt().state
    fresh = load_call(call["sid"])
    number = fresh.get("callback_number") or call.get("e164")
    now = now_utc()
    not_before = None
    if preset and preset != "asap" and number:
        # "after 18:00" is the caller's own clock: every zone their number may be in must agree
        zones = numbers.zones_for(number) or (rules.hotline.zone,)
        not_before = max(engine.callback_not_before(preset, now.astimezone(ZoneInfo(z))) for z in zones)
    if not engine.is_open(rules, queue, now):  # booked while closed: not before we open
        opens = engine.next_open_at(rules, queue, now)
        not_before = max(filter(None, (not_before, opens)), default=None)
    since = float(fresh.get("queued_at") or time.time())  # the place in line the caller already had
    state.leave_line(queue, f"call:{call['sid']}")
    state.update_call(call["sid"], waiting_in="", callback_booked="1")
    rt().enqueue(dispatch.register_callback, number, queue, lang, since,
                 not_before.isoformat() if not_before else None, call["sid"],
                 job_id=f"callback-{call['sid']}")
    return Script().add(say(rules, lang, "callback_booked"), HangupStep())
