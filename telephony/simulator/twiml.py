"""Parsing TwiML the way Twilio rejects it: not XML → 12100, root not `<Response>` → 12102."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

VERBS = {
    "Say", "Play", "Pause", "Gather", "Dial", "Record", "Enqueue", "Leave", "Redirect",
    "Hangup", "Reject",
}
# Real TwiML verbs the simulator does not perform: skipped with a note, not an error.
UNSUPPORTED_VERBS = {
    "Connect", "Start", "Stop", "Stream", "Siprec", "Refer", "Pay", "Prompt", "Sms", "Echo",
    "Queue", "Conference",
}
GATHER_CHILDREN = {"Say", "Play", "Pause"}


@dataclass(frozen=True)
class TwimlError:
    code: int
    message: str


def parse(text: str) -> ET.Element | TwimlError:
    """The `<Response>` element, or the Twilio error the document would raise."""
    try:
        root = ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    except ET.ParseError as exc:
        return TwimlError(12100, f"Document parse failure: {exc}")
    if root.tag != "Response":
        return TwimlError(12102, f"Invalid root element <{root.tag}>: expected <Response>")
    for verb in root:
        if verb.tag not in VERBS and verb.tag not in UNSUPPORTED_VERBS:
            return TwimlError(12100, f"Document parse failure: unknown verb <{verb.tag}>")
        if verb.tag == "Gather":
            for child in verb:
                if child.tag not in GATHER_CHILDREN:
                    return TwimlError(12100, f"Document parse failure: <{child.tag}> in <Gather>")
    return root


def text_of(el: ET.Element) -> str:
    """An element's text including SSML children, whitespace collapsed."""
    return " ".join("".join(el.itertext()).split())


def attr_bool(el: ET.Element, name: str, default: bool = False) -> bool:
    value = el.get(name)
    if value is None:
        return default
    return value.strip().lower() == "true"


def attr_int(el: ET.Element, name: str, default: int) -> int:
    value = el.get(name)
    try:
        return int(float(value)) if value is not None and value.strip() else default
    except ValueError:
        return default
