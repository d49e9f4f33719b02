"""The request class of the app: Flask's, with a lean parser for url-encoded form bodies.

Every Twilio webhook is a url-encoded POST of a dozen or more fields, read on every request (the
signature check signs them all). werkzeug's general form machinery (a parser object per request,
`parse_qsl` unquoting every name and value) costs more CPU than the fields themselves. This
reads the same body into the same `ImmutableMultiDict` with the same result (tests/test_forms.py
compares them) at about half the cost. Other bodies (multipart, JSON) take werkzeug's path.
"""

from __future__ import annotations

from urllib.parse import unquote_plus as _unquote_plus

import werkzeug.urls  # noqa: F401 — registers the "werkzeug.url_quote" codec error handler
from flask import Request
from werkzeug.datastructures import ImmutableMultiDict

URLENCODED = "application/x-www-form-urlencoded"
UNQUOTED_KEPT = 4096  # escaped names and values remembered per process (bounded: bodies are the caller's)

_unquoted: dict[str, str] = {}


def unquote_plus(text: str) -> str:
    """`unquote_plus` as werkzeug applies it, remembered: the escaped fields of a webhook are
    mostly the same few numbers (`To`, `Called`, a returning caller's `From`), and unquoting
    costs more than the lookup."""
    found = _unquoted.get(text)
    if found is None:
        if len(_unquoted) >= UNQUOTED_KEPT:
            _unquoted.clear()
        found = _unquoted[text] = _unquote_plus(text, errors="werkzeug.url_quote")
    return found


def parse_urlencoded(text: str) -> list[tuple[str, str]]:
    """`name=value&…` as werkzeug reads it (`parse_qsl(keep_blank_values=True)`): empty fields
    skipped, a field without `=` has an empty value, `+` is a space, percent-escapes are UTF-8
    and an invalid escape stays as written. Most Twilio fields need no unquoting at all."""
    fields: list[tuple[str, str]] = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        fields.append((name, value))
    return fields


class Fields(ImmutableMultiDict[str, str]):
    """werkzeug's fields, also answering `getall`: twilio's `RequestValidator` asks every
    signed field for `getall` first (aiohttp's name) and only after its AttributeError for
    `getlist`, an exception per field on every webhook."""

    def getall(self, key: str) -> list[str]:
        return list(dict.get(self, key, ()))  # what getlist(key) gives, without its type conversion


class FormRequest(Request):
    """A url-encoded body is parsed by `parse_urlencoded`; everything else is Flask's."""

    parameter_storage_class = Fields

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        if self.mimetype != URLENCODED or not self.want_form_data_parsed:
            super()._load_form_data()
            return
        stream = self._get_stream_for_parsing()  # limited to the body, and to max_content_length (413)
        try:
            form = self.parameter_storage_class(parse_urlencoded(stream.read().decode()))
        except ValueError:  # not UTF-8: an empty form, as werkzeug's silent parser gives
            form = self.parameter_storage_class()
        d = self.__dict__
        d["stream"], d["form"], d["files"] = stream, form, self.parameter_storage_class()
