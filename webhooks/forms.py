"""The request class of the app: Flask's, with a lean parser for url-encoded form bodies.

Every Twilio webhook is a url-encoded POST of a dozen or more fields, read on every request (the
signature check signs them all). werkzeug's general form machinery (a parser object per request,
`parse_qsl` unquoting every name and value) costs more CPU than the fields themselves. This
reads the same body into the same `ImmutableMultiDict` with the same result (tests/test_forms.py
compares them) at about half the cost. Other bodies (multipart, JSON) take werkzeug's path.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote_plus as _unquote_plus

import werkzeug.urls  # noqa: F401 — registers the "werkzeug.url_quote" codec error handler
from flask import Request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

URLENCODED = "application/x-www-form-urlencoded"
UNQUOTED_KEPT = 4096  # escaped names and values remembered per process (bounded: bodies are the caller's)
UNQUOTED_LONGEST = 48  # only short texts (numbers, sids) are remembered: a long one may be big or secret

_unquoted: dict[str, str] = {}


def unquote_plus(text: str) -> str:
    """`unquote_plus` as werkzeug applies it, remembered for short texts: the escaped fields of
    a webhook are mostly the same few numbers (`To`, `Called`, a returning caller's `From`),
    and unquoting costs more than the lookup. A long text is never kept (an unsigned request
    could otherwise pin memory, and a form's password stays out of the process's memory)."""
    found = _unquoted.get(text)
    if found is None:
        found = _unquote_plus(text, errors="werkzeug.url_quote")
        if len(text) <= UNQUOTED_LONGEST:
            if len(_unquoted) >= UNQUOTED_KEPT:
                _unquoted.clear()
            _unquoted[text] = found
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


_NO_FILES: Fields = Fields()  # immutable: one empty `files` serves every url-encoded request


class FormRequest(Request):
    """A url-encoded body is parsed by `parse_urlencoded`; everything else is Flask's."""

    parameter_storage_class = Fields

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        environ = self.environ
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != URLENCODED:
            super()._load_form_data()
            return
        body = self._sized_body()
        if body is None:  # no plain Content-Length (chunked, say): werkzeug's stream handling
            stream = self._get_stream_for_parsing()  # limited to the body and to max_content_length (413)
            body = stream.read()
        else:
            stream = BytesIO()  # the body is read, as after werkzeug's parsing
        try:
            form = self.parameter_storage_class(parse_urlencoded(body.decode()))
        except ValueError:  # not UTF-8: an empty form, as werkzeug's silent parser gives
            form = self.parameter_storage_class()
        d = self.__dict__
        d["stream"], d["form"], d["files"] = stream, form, _NO_FILES

    def _sized_body(self) -> bytes | None:
        """The body of a request with a plain Content-Length (every Twilio webhook), read
        straight from the server's input: what werkzeug's limited stream reads, without
        building one. As there, a length over `max_content_length` is refused (413) and a body
        that ends short is a disconnect (400). None (werkzeug's way) when the body was already
        read or its stream made (`get_data`, `stream`), or the request is shallow."""
        d = self.__dict__
        if "_cached_data" in d or "stream" in d or self.shallow:
            return None
        environ = self.environ
        length = environ.get("CONTENT_LENGTH")
        if not length or not (length.isascii() and length.isdigit()) or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        size = int(length)
        limit = self.max_content_length
        if limit is not None and size > limit:
            raise RequestEntityTooLarge()
        if not size:
            return b""
        stream = environ["wsgi.input"]
        body = stream.read(size)
        while len(body) < size:  # a server may hand it over in parts; the end before it is a disconnect
            more = stream.read(size - len(body))
            if not more:
                raise ClientDisconnected()
            body += more
        return body
