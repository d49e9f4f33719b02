"""The Twilio REST client: always twilio-python's own, optionally aimed at the local simulator."""

from __future__ import annotations

from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_API_HOST = "https://api.twilio.com"
REST_TIMEOUT_SECONDS = 10.0  # a REST call from a job may wait this long before RQ retries it


class RewritingHttpClient(TwilioHttpClient):
    """Sends the requests twilio-python builds for api.twilio.com to another base URL.

    twilio-python has no base-URL option; rewriting at the HTTP layer keeps every other part
    of the library (parameter names, auth, error parsing) exactly as in production.
    """

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        super().__init__(timeout=REST_TIMEOUT_SECONDS, **kwargs)
        self.api_base = api_base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        if url.startswith(TWILIO_API_HOST):
            url = self.api_base + url[len(TWILIO_API_HOST):]
        return super().request(method, url, *args, **kwargs)


def make_client(account_sid: str, auth_token: str, api_base: str | None = None) -> Client:
    """Build the REST client; `api_base` set → the local simulator, unset → Twilio's cloud."""
    if api_base:
        return Client(account_sid, auth_token, http_client=RewritingHttpClient(api_base))
    return Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=REST_TIMEOUT_SECONDS))
