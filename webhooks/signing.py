"""Which secrets and which hash a Twilio webhook's signature is checked with.

Twilio signs with the account's Auth Token and HMAC-SHA1, unless one of the account's Webhook
Rules matches the URL: then with that rule's SharedKey secret and the algorithm its Setting
names, and the request says so in `X-Twilio-Webhooks-Signature-Settings:
key=<key id>,algorithm=HMAC_SHA256`. The signed text is the same either way (the URL, then the
POST parameters sorted by name); only the secret and the hash differ. So a deployment can move
to shared keys, or rotate them, or rotate its Auth Token, without refusing a single call: every
secret that may sign is configured at once (`TWILIO_SECONDARY_AUTH_TOKEN`,
`TWILIO_WEBHOOK_KEYS`), and the request names the one to check it with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from .settings import Settings

__all__ = ["SETTINGS_ENVIRON_KEY", "SIGNATURE_SETTINGS_HEADER", "Refused", "Signing", "signing_for"]

SUPPORTED = (HMAC_SHA1, HMAC_SHA256)
SETTINGS_ENVIRON_KEY = "HTTP_" + SIGNATURE_SETTINGS_HEADER.upper().replace("-", "_")  # the header in the WSGI environ


class Refused(Exception):
    """The request names a signing setting we cannot check: refused before any HMAC. The
    message names the key id or algorithm, never a secret."""


@dataclass(frozen=True)
class Signing:
    validators: tuple[RequestValidator, ...]  # one a secret, tried in order; one must have signed
    algorithm: str  # HMAC_SHA1 or HMAC_SHA256, as `RequestValidator` takes it
    key: str | None = None  # the shared key's id, or None for the Auth Token


@lru_cache(maxsize=32)
def _signing(secrets: tuple[str, ...], algorithm: str, key: str | None) -> Signing:
    """Made once per signer, not on every webhook (the settings do not change while serving)."""
    return Signing(tuple(RequestValidator(secret) for secret in secrets), algorithm, key)


def shared_key_id(header: str) -> str | None:
    """The `key=` part of the signature settings header (None if it names none)."""
    for part in header.split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "key" and value.strip():
            return value.strip()
    return None


def signing_for(settings: Settings, header: str | None) -> Signing:
    """The secrets and hash for a request carrying signature settings `header` (None: absent).

    No header (or a blank one): the Auth Token, then the secondary one while a rotation is under
    way, with HMAC-SHA1. A header: the shared key it names, with the algorithm it names
    (HMAC-SHA1 if none, as twilio-python reads it); a key we do not hold, or an algorithm we
    cannot compute, is refused rather than checked against some other secret."""
    if header is None or not header.strip():
        secondary = settings.twilio_secondary_auth_token
        tokens = (settings.twilio_auth_token, secondary) if secondary else (settings.twilio_auth_token,)
        return _signing(tokens, HMAC_SHA1, None)
    algorithm = get_signature_algorithm(header).upper()
    if algorithm not in SUPPORTED:
        raise Refused(f"unsupported signature algorithm {algorithm[:40]!r}")
    key = shared_key_id(header)
    if key is None:
        raise Refused(f"{SIGNATURE_SETTINGS_HEADER} names no key")
    secret = settings.twilio_webhook_keys.get(key)
    if secret is None:
        raise Refused(f"shared key {key[:80]!r} is not in TWILIO_WEBHOOK_KEYS")
    return _signing((secret,), algorithm, key)
