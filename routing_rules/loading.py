"""Reading and writing the rules file, with every mistake reported by its path at once.

An admin fixing a rules file wants the whole list, not one error per attempt, so
`check_rules` collects YAML errors, pydantic's field errors and the cross-field checks of
`schema.cross_field_errors` (run on whichever sections are valid on their own).

`review_rules` adds the warnings of `rules_warnings`: what the rules ask for and Twilio cannot
do exactly (a ring target shorter than Twilio's shortest dial). They never refuse the rules:
a UK hotline's "3 rings" is an ordinary standard that Twilio can only approximate.

YAML is read with YAML 1.2 scalars: `10:00` stays the string "10:00" (YAML 1.1 makes it the
number 600) and `NO` stays "NO" (Norway, not False). Duplicate keys are errors, not "last wins".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from routing_rules.engine import ring_target, rings_for
from routing_rules.schema import (
    LANGS,
    AgentRules,
    CallbackRules,
    HighVolumeRules,
    HolidayRules,
    Hotline,
    LanguageVoice,
    Menu,
    OpeningHours,
    QueueRules,
    Rules,
    VoicemailRules,
    cross_field_errors,
)

YAML_PATH = "<yaml>"
_NESTED = (CallbackRules, HighVolumeRules, HolidayRules, OpeningHours, VoicemailRules)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RulesError:
    """One problem of a rules file: where (`queues.support.answer_within_rings`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class RulesWarning:
    """Something the rules ask for that will not happen exactly as written; never refuses them."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class RulesReview:
    """What `review_rules` found: errors refuse the rules, warnings only inform."""

    errors: list[RulesError]
    warnings: list[RulesWarning]

    @property
    def ok(self) -> bool:
        return not self.errors


class RulesInvalid(ValueError):
    """The rules file has problems; `.errors` lists every one."""

    def __init__(self, errors: list[RulesError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


# --- YAML ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans/numbers and duplicate keys recorded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[RulesError] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                line = key_node.start_mark.line + 1
                self.duplicates.append(RulesError(YAML_PATH, f"line {line}: duplicate key {key!r}"))
            seen.add(key if isinstance(key, str | int | float | bool) else id(key))
        return super().construct_mapping(node, deep=deep)


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _read_yaml(text: str) -> tuple[Any, list[RulesError]]:
    """The YAML's data and its duplicate keys, or the reason it cannot be read. Text the parser
    itself chokes on is such a reason too, not an exception: a NUL (the reader refuses it when
    the loader is made), nesting deeper than Python's stack, a number too long to convert."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as error:
        return None, [RulesError(YAML_PATH, str(error))]
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [RulesError(YAML_PATH, f"{where}{error.problem or error}")]
    except yaml.YAMLError as error:
        return None, [RulesError(YAML_PATH, str(error))]
    except RecursionError:
        return None, [RulesError(YAML_PATH, "nested too deeply to read")]
    except ValueError as error:  # e.g. an integer of thousands of digits
        return None, [RulesError(YAML_PATH, str(error))]
    finally:
        loader.dispose()
    return data, loader.duplicates


# --- checking -----------------------------------------------------------------------------


def check_rules(text: str) -> list[RulesError]:
    """Every problem of the rules file `text`; an empty list means it loads."""
    _, errors = _parse(text)
    return errors


def review_rules(text: str) -> RulesReview:
    """Every error of the rules file `text` and, when its fields are valid, every warning."""
    rules, errors = _parse(text, keep_rules=True)
    return RulesReview(errors, rules_warnings(rules) if rules is not None else [])


def rules_warnings(rules: Rules) -> list[RulesWarning]:
    """What valid rules ask for that Twilio will not do exactly; the one place warnings are made.

    A ring target shorter than Twilio's shortest dial: `<Dial timeout>` is at least 5 s and
    Twilio rings about `dial_buffer_seconds` past it, so agents ring longer than the target.
    """
    found = []
    for name in rules.queues:
        target = ring_target(rules, name)
        if target.kept:
            continue
        ring = "ring" if target.rings == 1 else "rings"
        shortest = (f"{target.timeout_seconds} s timeout + {target.buffer_seconds} s buffer = "
                    f"{target.rings_about_seconds} s" if target.buffer_seconds
                    else f"{target.timeout_seconds} s")
        heard = rings_for(target.rings_about_seconds, rules, name)
        found.append(RulesWarning(
            f"queues.{name}.answer_within_rings",
            f"{target.rings} {ring} of {target.ring_seconds:g} s ({target.target_seconds:g} s) is "
            f"shorter than Twilio's shortest dial ({shortest}): agents will ring about "
            f"{target.rings_about_seconds} s ({heard} rings)"))
    return found


def load_rules(text: str) -> Rules:
    """The rules in `text`, or `RulesInvalid` listing every problem."""
    rules, errors = _parse(text)
    if errors or rules is None:
        raise RulesInvalid(errors)
    return rules


def load_rules_file(path: str | Path) -> Rules:
    return load_rules(Path(path).read_text(encoding="utf-8"))


def dump_rules(rules: Rules) -> str:
    """YAML that `load_rules` reads back into equal rules (defaults written out)."""
    data = rules.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _parse(text: str, keep_rules: bool = False) -> tuple[Rules | None, list[RulesError]]:
    """The rules and [] when `text` loads, else (None, errors). With `keep_rules`, rules whose
    fields are all valid come back beside cross-field errors (for their warnings)."""
    data, errors = _read_yaml(text)
    if errors:
        return None, errors
    if not isinstance(data, dict):
        return None, [RulesError(YAML_PATH, "the file must be a mapping (company:, hotline:, ...)")]
    try:
        rules: Rules | None = Rules.model_validate(data, context={"skip_cross_checks": True})
    except ValidationError as error:
        rules = None
        errors += _pydantic_errors(error)
    errors += [RulesError(path, message) for path, message in _cross_errors(data)]
    if errors:
        return (rules if keep_rules else None), list(dict.fromkeys(errors))
    return rules, []


def _pydantic_errors(error: ValidationError) -> list[RulesError]:
    found = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"] if part != "[key]") or "<root>"
        found.append(RulesError(path, _message(item)))
    return found


def _message(item: Any) -> str:
    if item["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(item["loc"][-1]), _FIELD_NAMES, n=1)
        return f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"
    if item["type"] == "missing":
        return "required"
    return str(item["msg"]).removeprefix("Value error, ")


_FIELD_NAMES = sorted({name for model in (Rules, Hotline, LanguageVoice, Menu, QueueRules, AgentRules,
                                           *_NESTED) for name in model.model_fields})


def _cross_errors(data: dict[Any, Any]) -> list[tuple[str, str]]:
    """Cross-field checks over the sections that are valid by themselves."""
    languages = {k: v for k, v in _entries(data, "languages", LanguageVoice).items() if k in LANGS}
    prompts = TypeAdapter(dict[str, dict[str, str]])
    raw_prompts = data.get("prompts") or {}
    valid_prompts = {
        str(lang): texts for lang, texts in (raw_prompts.items() if isinstance(raw_prompts, dict)
                                             else [])
        if str(lang) in LANGS and _valid(prompts, {"x": texts})
    }
    raw_agents = data.get("agents")
    return cross_field_errors(
        hotline=_one(Hotline, data.get("hotline")),
        languages=languages,  # type: ignore[arg-type]
        prompts=valid_prompts,  # type: ignore[arg-type]
        menu=_one(Menu, data.get("menu", {})),
        queues=_entries(data, "queues", QueueRules),
        agents=_entries(data, "agents", AgentRules),
        agent_ids={str(k) for k in raw_agents} if isinstance(raw_agents, dict) else set(),
    )


def _one(model: type[M], raw: Any) -> M | None:
    """`raw` as `model`; if invalid, a partial model of the fields that are valid on their own.

    Fields that fail are left out (so a cross-check sees them as missing, not as wrong), which
    lets one broken setting of a queue not hide the queue's unknown agents or digit clash.
    """
    try:
        return model.model_validate(raw)
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return None
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in raw:
            annotation: Any = field.annotation
            if field.metadata:
                annotation = Annotated[annotation, *field.metadata]  # keep ge/le and friends
            adapter: TypeAdapter[Any] = TypeAdapter(annotation)
            try:
                values[name] = adapter.validate_python(raw[name])
            except ValidationError:
                continue
    return model.model_construct(**values)


def _entries(data: dict[Any, Any], section: str, model: type[M]) -> dict[str, M]:
    raw = data.get(section)
    if not isinstance(raw, dict):
        return {}
    parsed = {str(key): _one(model, value) for key, value in raw.items()}
    return {key: value for key, value in parsed.items() if value is not None}


def _valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True
