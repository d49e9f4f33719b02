"""HTTP requests to the app, signed the way Twilio signs them.

Uses twilio-python's own `RequestValidator.compute_signature`, so a signature the simulator
sends is exactly one the app's validator accepts; nothing is hand-rolled.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urldefrag, urlencode, urlsplit

import requests
from twilio.request_validator import RequestValidator

TWIML_TIMEOUT_SECONDS = 15.0  # Twilio gives a TwiML request 15 s in total
XML_TYPES = ("text/xml", "application/xml", "text/html")  # Twilio parses these as TwiML
USER_AGENT = "TwilioProxy/1.1"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


def new_idempotency_token() -> str:
    """A token for a new webhook request (opaque to the app, as Twilio's are)."""
    return uuid.uuid4().hex


@dataclass
class HttpResult:
    status: int | None
    body: str
    content_type: str
    latency: float
    error: str | None = None  # connection failure text


class WebhookClient:
    """Sends form-encoded, signed requests; one `requests.Session` per thread."""

    def __init__(self, auth_token: str, timeout: float = TWIML_TIMEOUT_SECONDS) -> None:
        self.validator = RequestValidator(auth_token)
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def signed_url_and_headers(
        self, url: str, method: str, params: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """The URL to request and its headers; the `#fragment` (connection overrides) is
        neither sent nor signed."""
        url, _fragment = urldefrag(url)
        if method == "GET":
            sep = "&" if urlsplit(url).query else "?"
            url = url + sep + urlencode(params) if params else url
            signature = self.validator.compute_signature(url, {})
        else:
            signature = self.validator.compute_signature(url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
        }
        return url, headers

    def send(self, url: str, method: str, params: dict[str, str], token: str | None = None) -> HttpResult:
        """One delivery. `token`: the I-Twilio-Idempotency-Token of the request being sent again
        (Twilio's retries carry the first delivery's); a new request gets a new one."""
        method = (method or "POST").upper()
        target, headers = self.signed_url_and_headers(url, method, params)
        headers[IDEMPOTENCY_HEADER] = token or new_idempotency_token()
        started = time.perf_counter()
        try:
            if method == "GET":
                resp = self._session().get(target, headers=headers, timeout=self.timeout)
            else:
                resp = self._session().post(target, data=params, headers=headers,
                                            timeout=self.timeout)
        except requests.RequestException as exc:
            return HttpResult(None, "", "", time.perf_counter() - started, str(exc))
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return HttpResult(resp.status_code, resp.text, content_type,
                          time.perf_counter() - started)
