"""The rules file as pydantic models: what an admin may write, and what is a mistake.

Every model forbids unknown fields, so a typo is an error rather than a silently ignored
setting. Single-field checks sit on the models (pydantic reports them with their path);
checks that compare fields (unknown agents, digit collisions, languages without a voice) are
in `cross_field_errors`, which `Rules` runs too and `routing_rules.loading` uses to list every
problem of a file at once.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from routing_rules.outbound import OutboundPolicy
from routing_rules.prompts import ALWAYS_FILLED, KEYS, TEXTS, placeholders

Lang = Literal["en", "ru", "pl", "et"]
LANGS: tuple[Lang, ...] = get_args(Lang)
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
Strategy = Literal["longest_idle", "round_robin", "ring_all", "sticky"]

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
CLIENT_RE = re.compile(r"^client:[A-Za-z0-9_.-]+$")
SIP_RE = re.compile(r"^sip:[^@\s:;]+@[A-Za-z0-9.-]+(:\d{1,5})?(;\S*)?$")
ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")  # queue and agent ids end up in URLs and Redis keys
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
NO_SAY_VOICE: frozenset[str] = frozenset({"et"})  # Twilio's <Say> has no voice for these

# Seconds per ring cycle as callers hear them (ITU tables, as in Asterisk's indications.conf).
RING_SECONDS_BY_COUNTRY: dict[str, float] = {
    "US": 6.0, "CA": 6.0,  # 2 s on, 4 s off
    "GB": 3.0, "IE": 3.0, "AU": 3.0, "NZ": 3.0,  # double ring 0.4-0.2-0.4, 2 s off
}
DEFAULT_RING_SECONDS = 5.0  # EE, PL, RU, DE and most of Europe: 1 s on, 4 s off


def ring_seconds_for_country(country: str) -> float:
    """Length of one ring cycle in `country` (ISO alpha-2); 5 s where we know no better."""
    return RING_SECONDS_BY_COUNTRY.get(country.upper(), DEFAULT_RING_SECONDS)


# --- single values ----------------------------------------------------------------------------


def _e164(value: str) -> str:
    if not E164_RE.match(value):
        raise ValueError(f"{value!r} is not an E.164 number like +3725550100")
    return value


def _endpoint(value: str) -> str:
    if not (E164_RE.match(value) or CLIENT_RE.match(value) or SIP_RE.match(value)):
        raise ValueError(
            f"{value!r} is not an endpoint: use E.164 (+3725550100), client:name or sip:user@host")
    return value


def _digit(value: Any) -> Any:
    """A menu key; YAML reads `digit: 1` as a number, so accept ints 0-9 too."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) != 1 or value not in "0123456789*#":
        raise ValueError(f"{value!r} is not one key: use 0-9, '*' or '#' (quote * and #)")
    return value


def _hhmm(value: Any) -> Any:
    if not isinstance(value, str):
        # ValueError, not TypeError: pydantic reports only ValueErrors as validation errors
        raise ValueError(f"{value!r} is not a time: write it quoted, like '08:00'")  # noqa: TRY004
    if value != "24:00" and not HHMM_RE.match(value):
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    return value


def minutes_of(hhmm: str) -> int:
    """'08:30' -> 510; '24:00' -> 1440 (a close at midnight)."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


E164 = Annotated[str, AfterValidator(_e164)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
Digit = Annotated[str, BeforeValidator(_digit)]
HHMM = Annotated[str, BeforeValidator(_hhmm)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ---------------------------------------------------------------------------------


class Hotline(_Model):
    """Where the hotline lives: its clock (zone), its ring cadence (country) and numbers."""

    zone: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    numbers: list[E164] = Field(min_length=1)
    default_language: Lang
    ring_seconds: float | None = Field(default=None, gt=0, le=30)
    dial_buffer_seconds: int = Field(default=5, ge=0, le=30)
    recording_consent: bool = True

    @field_validator("zone")
    @classmethod
    def _zone_loads(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like Europe/Tallinn") from None
        return value


class LanguageVoice(_Model):
    """How one language is voiced: `<Say>` with a locale and voice, or recorded audio."""

    say_language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}-[A-Z]{2}$")
    voice: str | None = None
    audio_base_url: str | None = None

    @model_validator(mode="after")
    def _one_way_to_speak(self) -> LanguageVoice:
        if (self.say_language is None) == (self.audio_base_url is None):
            raise ValueError("set exactly one of say_language or audio_base_url")
        if self.voice is not None and self.say_language is None:
            raise ValueError("voice needs say_language (audio is played, not spoken)")
        return self


class Menu(_Model):
    """The main menu's keys; None turns an option off."""

    timeout_seconds: int = Field(default=6, ge=1, le=60)
    language_digit: Digit | None = "9"
    opt_out_digit: Digit | None = "8"
    complaint_digit: Digit | None = "7"
    repeats: int = Field(default=2, ge=1, le=5)

    def special_digits(self) -> dict[str, str]:
        """{digit: field name} of the keys that are not queues."""
        fields = ("language_digit", "opt_out_digit", "complaint_digit")
        return {getattr(self, f): f for f in fields if getattr(self, f) is not None}

    @model_validator(mode="after")
    def _distinct_keys(self) -> Menu:
        used = [d for d in (self.language_digit, self.opt_out_digit, self.complaint_digit) if d]
        if len(used) != len(set(used)):
            raise ValueError("language_digit, opt_out_digit and complaint_digit must differ")
        return self


class OpeningHours(_Model):
    """Open [open, close) on `days`, hotline wall time. Overnight: split into two entries."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    open: HHMM
    close: HHMM

    @model_validator(mode="after")
    def _opens_before_close(self) -> OpeningHours:
        if self.open == "24:00":
            raise ValueError("open must be before 24:00")
        if minutes_of(self.open) >= minutes_of(self.close):
            raise ValueError(f"open {self.open} must be before close {self.close}")
        return self


class HolidayRules(_Model):
    """Public holidays (the `holidays` package) plus the company's own closed dates."""

    country: str | None = None
    subdivision: str | None = None
    extra_dates: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _calendar_exists(self) -> HolidayRules:
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("subdivision needs country")
            return self
        try:
            holidays_lib.country_holidays(self.country, subdiv=self.subdivision)
        except NotImplementedError as error:
            raise ValueError(f"no holiday calendar: {error}") from None
        return self


class VoicemailRules(_Model):
    max_length_seconds: int = Field(default=120, ge=5, le=3600)
    respond_within_minutes: int = Field(default=240, ge=1)


class HighVolumeRules(_Model):
    """When to offer voicemail/callback instead of ringing on: any trigger that holds."""

    waiting_calls_at_least: int | None = Field(default=None, ge=1)
    estimated_wait_at_least_seconds: int | None = Field(default=None, ge=1)
    when_no_agent_available: bool = True
    announce_every_seconds: int = Field(default=30, ge=10, le=600)
    offer_voicemail: bool = True
    offer_callback: bool = True


class CallbackRules(_Model):
    """Callbacks: deadline, retries, and the times a caller may pick.

    `time_presets`: "asap" (the first moment the outbound guard allows) or "after HH:MM"
    (not before that time, in the client's local time). The caller picks preset n with key n.
    """

    respond_within_minutes: int = Field(default=60, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_spacing_minutes: int = Field(default=10, ge=1)
    time_presets: list[str] = Field(default_factory=lambda: ["asap"], min_length=1, max_length=9)

    @field_validator("time_presets")
    @classmethod
    def _presets_are_known(cls, value: list[str]) -> list[str]:
        for preset in value:
            after = preset.removeprefix("after ")
            if preset != "asap" and (after == preset or not HHMM_RE.match(after)):
                raise ValueError(f"{preset!r}: use 'asap' or 'after HH:MM'")
        if len(set(value)) != len(value):
            raise ValueError("presets repeat")
        return value


class QueueRules(_Model):
    """One queue: who answers, within how many rings, when it is open, what happens if not."""

    digit: Digit | None = None  # None: reached only by the complaint key or a transfer
    department: dict[Lang, str] = Field(min_length=1)
    agents: list[str] = Field(min_length=1)
    skills: list[str] = Field(default_factory=list)
    answer_within_rings: int = Field(ge=1, le=20)
    ring_seconds: float | None = Field(default=None, gt=0, le=30)
    strategy: Strategy = "longest_idle"
    max_attempts: int = Field(default=3, ge=1, le=20)
    hours: list[OpeningHours] = Field(default_factory=list)
    holidays: HolidayRules = Field(default_factory=HolidayRules)
    voicemail: VoicemailRules = Field(default_factory=VoicemailRules)
    high_volume: HighVolumeRules | None = None
    callback: CallbackRules = Field(default_factory=CallbackRules)
    survey: bool = False
    complaints: bool = False

    def department_for(self, lang: str) -> str:
        """The queue's name in `lang`, else in any language it has (the file is validated)."""
        return self.department.get(lang) or next(iter(self.department.values()))  # type: ignore[call-overload]


class ComplaintRules(_Model):
    """Deadlines of every complaint (menu key or an agent's API action), hotline-wide: an
    agent-opened complaint has no queue, so the deadlines cannot live on the complaints queue."""

    acknowledge_within_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    resolve_within_hours: int = Field(default=72, ge=1, le=365 * 24)

    @model_validator(mode="after")
    def _resolve_after_acknowledge(self) -> ComplaintRules:
        if self.resolve_within_hours * 60 < self.acknowledge_within_minutes:
            raise ValueError("resolve_within_hours must not end before acknowledge_within_minutes")
        return self


class AlertRules(_Model):
    """Where overdue voicemails, callbacks and complaints are reported, once each."""

    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    sms_to: list[E164] = Field(default_factory=list)
    check_every_seconds: int = Field(default=60, ge=10, le=3600)


class AgentRules(_Model):
    name: str = Field(min_length=1)
    endpoint: Endpoint
    languages: list[Lang] = Field(default_factory=list)  # empty: the hotline's default language
    skills: list[str] = Field(default_factory=list)
    wrap_up_seconds: int = Field(default=10, ge=0, le=3600)
    miss_limit: int = Field(default=3, ge=1)
    available_by_default: bool = True
    supervisor: bool = False


class Rules(_Model):
    """The whole rules file (storage format `version: 1`)."""

    version: Literal[1] = 1
    company: str = Field(min_length=1)
    hotline: Hotline
    languages: dict[Lang, LanguageVoice] = Field(min_length=1)
    prompts: dict[Lang, dict[str, str]] = Field(default_factory=dict)
    menu: Menu = Field(default_factory=Menu)
    queues: dict[str, QueueRules] = Field(min_length=1)
    agents: dict[str, AgentRules] = Field(default_factory=dict)
    outbound: OutboundPolicy = Field(default_factory=OutboundPolicy)
    complaints: ComplaintRules = Field(default_factory=ComplaintRules)
    alerts: AlertRules = Field(default_factory=AlertRules)

    @model_validator(mode="after")
    def _fields_agree(self, info: ValidationInfo) -> Rules:
        # loading.check_rules runs these itself, per section, to report each with its path.
        if info.context and info.context.get("skip_cross_checks"):
            return self
        errors = cross_field_errors(
            hotline=self.hotline, languages=self.languages, prompts=self.prompts,
            menu=self.menu, queues=self.queues, agents=self.agents, agent_ids=set(self.agents))
        if errors:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in errors))
        return self

    def complaints_queue(self) -> str | None:
        """The supervisors' queue that the complaint key routes to."""
        return next((name for name, q in self.queues.items() if q.complaints), None)

    def agents_available_by_default(self) -> dict[str, bool]:
        """Each agent's id and whether it starts available: what the live state is synced to."""
        return {agent_id: agent.available_by_default for agent_id, agent in self.agents.items()}

    def default_queue(self) -> str:
        """Where a caller who presses nothing goes: the first queue that is not complaints."""
        return next((name for name, q in self.queues.items() if not q.complaints),
                    next(iter(self.queues)))

    def department_name(self, lang: str) -> str:
        """The hotline's own department name for greetings (prompt key "department")."""
        lang = lang if lang in self.languages else self.hotline.default_language
        return self.prompts.get(lang, {}).get("department") or TEXTS[lang]["department"]  # type: ignore[call-overload]

    def default_voicemail_minutes(self) -> int:
        return self.queues[self.default_queue()].voicemail.respond_within_minutes


# --- checks across fields ---------------------------------------------------------------------

Problem = tuple[str, str]  # (dotted path, message)


def cross_field_errors(
    *,
    hotline: Hotline | None,
    languages: dict[Lang, LanguageVoice],
    prompts: dict[Lang, dict[str, str]],
    menu: Menu | None,
    queues: dict[str, QueueRules],
    agents: dict[str, AgentRules],
    agent_ids: set[str],
) -> list[Problem]:
    """Every disagreement between sections; any section may be missing (it failed on its own).

    `agent_ids` are all ids in the file, valid or not, so a broken agent is not also "unknown".
    Sections may be partial models (`model_construct`) lacking the fields that failed on their
    own, hence the `getattr(..., None)` on required fields below.
    """
    problems: list[Problem] = []
    problems += _language_problems(hotline, languages, prompts)
    problems += _queue_problems(languages, menu, queues, agents, agent_ids)
    problems += _agent_problems(languages, agents)
    numbers = getattr(hotline, "numbers", None) or []
    if len(set(numbers)) != len(numbers):
        problems.append(("hotline.numbers", "a number is listed twice"))
    return problems


def _language_problems(
    hotline: Hotline | None,
    languages: dict[Lang, LanguageVoice],
    prompts: dict[Lang, dict[str, str]],
) -> list[Problem]:
    problems: list[Problem] = []
    default = getattr(hotline, "default_language", None)
    if default is not None and languages and default not in languages:
        problems.append(("hotline.default_language", f"{default!r} has no entry in languages"))
    for lang, voice in languages.items():
        if lang in NO_SAY_VOICE and voice.say_language is not None:
            problems.append((f"languages.{lang}.say_language",
                             "Twilio has no <Say> voice for this language: use audio_base_url"))
        elif voice.say_language and voice.say_language.split("-")[0] != lang:
            problems.append((f"languages.{lang}.say_language",
                             f"{voice.say_language!r} is not a {lang}-* locale"))
    for lang, texts in prompts.items():
        if lang not in languages:
            problems.append((f"prompts.{lang}", f"{lang!r} has no entry in languages"))
        for key, text in texts.items():
            if key not in KEYS:
                problems.append((f"prompts.{lang}.{key}", "unknown prompt key"))
                continue
            allowed = placeholders(TEXTS["en"][key]) | ALWAYS_FILLED
            try:
                extra = placeholders(text) - allowed
            except ValueError as error:
                problems.append((f"prompts.{lang}.{key}", f"bad braces: {error}"))
                continue
            if extra:
                names = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
                problems.append((f"prompts.{lang}.{key}",
                                 f"unknown placeholder {{{min(extra)}}}; allowed: {names}"))
    return problems


def _queue_problems(
    languages: dict[Lang, LanguageVoice],
    menu: Menu | None,
    queues: dict[str, QueueRules],
    agents: dict[str, AgentRules],
    agent_ids: set[str],
) -> list[Problem]:
    problems: list[Problem] = []
    digits: dict[str, str] = menu.special_digits() if menu else {}
    owners = {d: f"the menu's {field}" for d, field in digits.items()}
    complaint_queues = [name for name, q in queues.items() if q.complaints]
    for name, queue in queues.items():
        path = f"queues.{name}"
        if not ID_RE.match(name):
            problems.append((path, "queue ids use letters, digits, '_', '-' and '.' only"))
        if queue.digit is not None:
            if queue.digit in owners:
                problems.append((f"{path}.digit",
                                 f"{queue.digit!r} is already used by {owners[queue.digit]}"))
            else:
                owners[queue.digit] = f"queue {name!r}"
        department = getattr(queue, "department", None) or {}
        missing = [lang for lang in languages if lang not in department]
        if department and missing:
            problems.append((f"{path}.department", f"no name in {', '.join(missing)}"))
        for lang in department:
            if languages and lang not in languages:
                problems.append((f"{path}.department.{lang}", f"{lang!r} has no entry in languages"))
        problems += _queue_agent_problems(path, queue, agents, agent_ids)
    if len(complaint_queues) > 1:
        problems.append((f"queues.{complaint_queues[1]}.complaints",
                         f"only one complaints queue; {complaint_queues[0]!r} is one already"))
    if menu and menu.complaint_digit and queues and not complaint_queues:
        problems.append(("menu.complaint_digit",
                         "no queue has complaints: true (set it, or complaint_digit: null)"))
    return problems


def _queue_agent_problems(
    path: str, queue: QueueRules, agents: dict[str, AgentRules], agent_ids: set[str],
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, agent_id in enumerate(getattr(queue, "agents", None) or []):
        if agent_id not in agent_ids:
            problems.append((f"{path}.agents.{i}", f"unknown agent {agent_id!r}"))
        elif agent_id in seen:
            problems.append((f"{path}.agents.{i}", f"agent {agent_id!r} is listed twice"))
        elif queue.complaints and agent_id in agents and not agents[agent_id].supervisor:
            problems.append((f"{path}.agents.{i}",
                             f"{agent_id!r} is not a supervisor (complaints go to supervisors)"))
        seen.add(agent_id)
    known = [agents[a] for a in seen if a in agents]
    if queue.skills and known and not any(set(queue.skills) <= set(a.skills) for a in known):
        problems.append((f"{path}.skills",
                         f"no agent of this queue has every skill: {', '.join(queue.skills)}"))
    return problems


def _agent_problems(
    languages: dict[Lang, LanguageVoice], agents: dict[str, AgentRules],
) -> list[Problem]:
    problems: list[Problem] = []
    endpoints: dict[str, str] = {}
    for agent_id, agent in agents.items():
        path = f"agents.{agent_id}"
        if not ID_RE.match(agent_id):
            problems.append((path, "agent ids use letters, digits, '_', '-' and '.' only"))
        for i, lang in enumerate(agent.languages):
            if languages and lang not in languages:
                problems.append((f"{path}.languages.{i}", f"{lang!r} has no entry in languages"))
        endpoint = getattr(agent, "endpoint", None)
        if endpoint is None:
            continue
        if endpoint in endpoints:
            problems.append((f"{path}.endpoint", f"same endpoint as agent {endpoints[endpoint]!r}"))
        endpoints.setdefault(endpoint, agent_id)
    return problems
