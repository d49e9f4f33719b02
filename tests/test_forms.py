"""The app's url-encoded form parser reads every body as werkzeug's own parser does."""

from __future__ import annotations

from io import BytesIO
from urllib.parse import urlencode

import pytest
from flask import Flask, Request, jsonify, request
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from webhooks import forms
from webhooks.forms import FormRequest

BODIES = [
    b"",
    b"CallSid=CA1&From=%2B37255500000&To=%2B3726000000&Digits=1",
    b"SpeechResult=hello+there&Name=J%C3%BCri+M%C3%A4gi",  # + is a space, UTF-8 escapes
    b"a=1&&b=2&",  # empty fields are skipped
    b"flag&empty=&=novalue",  # no '=', an empty value, an empty name
    b"a=1&a=2&a=3",  # repeated names keep every value, in order
    b"eq=a=b=c",  # only the first '=' splits
    b"bad=%zz&half=%E2%82&ok=%E2%82%AC",  # invalid escapes stay as written
    b"semi=a;b",  # ';' is not a separator
    "raw=Jüri".encode(),  # raw UTF-8, unescaped
]


def werkzeug_form(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> list[tuple[str, str]]:
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    return list(Request(environ).form.items(multi=True))


def our_form(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> list[tuple[str, str]]:
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    return list(FormRequest(environ).form.items(multi=True))


@pytest.mark.parametrize("body", BODIES)
def test_a_body_parses_as_werkzeug_parses_it(body: bytes) -> None:
    assert our_form(body) == werkzeug_form(body)


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=12))
def test_any_encoded_fields_parse_as_werkzeug_parses_them(fields: list[tuple[str, str]]) -> None:
    body = urlencode(fields).encode()
    assert our_form(body) == werkzeug_form(body)


@given(st.binary(max_size=64))
def test_any_bytes_parse_as_werkzeug_parses_them(body: bytes) -> None:
    assert our_form(body) == werkzeug_form(body)  # not UTF-8: an empty form on both sides


def test_other_bodies_take_werkzeug_s_path() -> None:
    body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XX--\r\n"
    assert our_form(body, "multipart/form-data; boundary=XX") == [("a", "1")]
    assert our_form(b'{"a": 1}', "application/json") == []


def test_a_body_over_the_app_s_limit_is_refused_with_413() -> None:
    app = Flask(__name__)
    app.request_class = FormRequest
    app.config["MAX_CONTENT_LENGTH"] = 100

    @app.post("/f")
    def echo():
        return jsonify(request.form.to_dict())

    client = app.test_client()
    assert client.post("/f", data={"a": "1"}).get_json() == {"a": "1"}
    assert client.post("/f", data={"a": "x" * 200}).status_code == 413


def test_remembered_unquoting_is_bounded_and_stays_exact() -> None:
    for n in range(forms.UNQUOTED_KEPT + 10):
        assert forms.unquote_plus(f"%2B{n}") == f"+{n}"
    assert len(forms._unquoted) <= forms.UNQUOTED_KEPT
    assert forms.unquote_plus("a+b%20c%zz") == "a b c%zz"  # the invalid escape stays as written


def test_fields_answer_getall_as_twilio_s_validator_asks_first() -> None:
    form = our_form_request(b"a=1&a=2&b=3").form
    assert isinstance(form, forms.Fields)
    assert form.getall("a") == ["1", "2"] and form.getall("b") == ["3"] and form.getall("c") == []
    from twilio.request_validator import RequestValidator

    validator = RequestValidator("secret")
    plain = {"a": "1", "b": "3"}  # one value each: the same signature from a plain dict
    single = our_form_request(b"a=1&b=3").form
    assert validator.compute_signature("https://x/y", single) == validator.compute_signature("https://x/y", plain)


def our_form_request(body: bytes) -> FormRequest:
    environ = EnvironBuilder(method="POST", data=body, content_type="application/x-www-form-urlencoded").get_environ()
    return FormRequest(environ)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded; charset=UTF-8",
                                          "Application/X-WWW-Form-Urlencoded", " application/x-www-form-urlencoded ;x=1"])
def test_the_content_type_is_read_as_werkzeug_reads_it(content_type: str) -> None:
    body = b"CallSid=CA1&From=%2B37255500000"
    assert our_form(body, content_type) == werkzeug_form(body, content_type) == [("CallSid", "CA1"), ("From", "+37255500000")]


def test_a_body_without_a_plain_length_takes_werkzeug_s_stream() -> None:
    body = b"CallSid=CA1&Digits=1"
    for extra in ({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}, {"CONTENT_LENGTH": "x"}):
        environ = EnvironBuilder(method="POST", data=body, content_type=URLENCODED_TYPE).get_environ()
        environ.update(extra)
        expected = list(Request(dict(environ, **{"wsgi.input": BytesIO(body)})).form.items(multi=True))
        environ["wsgi.input"] = BytesIO(body)
        assert list(FormRequest(environ).form.items(multi=True)) == expected


def test_a_body_over_the_content_limit_is_refused_with_413() -> None:
    app = Flask(__name__)
    app.request_class = FormRequest
    app.config["MAX_CONTENT_LENGTH"] = 16

    @app.post("/f")
    def f():  # type: ignore[no-untyped-def]
        return jsonify(dict(request.form))

    client = app.test_client()
    assert client.post("/f", data={"a": "1"}).get_json() == {"a": "1"}
    assert client.post("/f", data={"a": "x" * 40}).status_code == 413
    parsed = our_form_request(b"a=1")
    assert parsed.form["a"] == "1" and parsed.stream.read() == b""  # read, as after werkzeug's parsing


URLENCODED_TYPE = "application/x-www-form-urlencoded"


def test_a_long_escaped_value_is_never_remembered() -> None:
    forms._unquoted.clear()
    secret = "p%40ss+" + "%41" * 40  # a password or a big field: unquoted, not kept
    assert forms.unquote_plus(secret) == "p@ss " + "A" * 40
    assert secret not in forms._unquoted and not forms._unquoted


def test_a_body_read_before_the_form_still_parses_as_werkzeug_parses_it() -> None:
    body = b"CallSid=CA1&From=%2B3725550000"
    environ = EnvironBuilder(method="POST", data=body, content_type=URLENCODED_TYPE).get_environ()
    ours, theirs = FormRequest(dict(environ, **{"wsgi.input": BytesIO(body)})), Request(environ)
    assert ours.get_data() == theirs.get_data() == body
    assert list(ours.form.items(multi=True)) == list(theirs.form.items(multi=True)) == [
        ("CallSid", "CA1"), ("From", "+3725550000")]


def test_a_body_that_ends_short_is_a_disconnect_as_in_werkzeug() -> None:
    from werkzeug.exceptions import ClientDisconnected

    environ = EnvironBuilder(method="POST", data=b"CallSid=CA1", content_type=URLENCODED_TYPE).get_environ()
    environ["CONTENT_LENGTH"] = "40"  # more than will arrive
    for request_class in (Request, FormRequest):
        with pytest.raises(ClientDisconnected):
            request_class(dict(environ, **{"wsgi.input": BytesIO(b"CallSid=CA1")})).form  # noqa: B018


class _Trickle(BytesIO):
    def read(self, size: int | None = -1) -> bytes:  # a server that hands the body over in parts
        return super().read(min(size, 5) if size is not None and size >= 0 else 5)


def test_a_body_handed_over_in_parts_is_read_whole() -> None:
    body = b"CallSid=CA1&From=%2B3725550000&Digits=1"
    environ = EnvironBuilder(method="POST", data=body, content_type=URLENCODED_TYPE).get_environ()
    environ["wsgi.input"] = _Trickle(body)
    assert FormRequest(environ).form.to_dict() == {"CallSid": "CA1", "From": "+3725550000", "Digits": "1"}
