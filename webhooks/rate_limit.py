"""Rate limits on `/api/*` and `/metrics`: a fixed window per bearer token (or per client IP
without one). Both take bearer tokens, so both are places to guess one; a token has one budget
across them. `/voice/*` is never limited: Twilio's requests are signed, and refusing one would
hang up a caller.

Counted in Redis so every web process and machine shares the window. Unauthenticated requests
get a tenth of the budget per IP: that is where token guessing comes from. A Redis fault lets
the request through (the API must not go down with the limiter); the limiter pauses briefly.
"""

from __future__ import annotations

import hashlib
import math
import time

import redis as redis_lib
from flask import Flask, Response, current_app, g, jsonify, request

from telephony.state import LiveState

from .auth import _match
from .current import this_request
from .runtime import Runtime

LIMITED_PREFIXES = ("/api/", "/metrics")  # every path that takes a bearer token
UNAUTHENTICATED_SHARE = 10  # an IP without a valid token gets limit // 10 (at least 10)
REDIS_PAUSE_SECONDS = 5.0  # after a Redis fault, do not try again on every request


def parse_limit(text: str) -> tuple[int, int]:
    """`"600/60"` → (600 requests, 60 s window); `"0"` or `""` turns limiting off."""
    if not text or text.strip() == "0":
        return 0, 60
    count, _, seconds = text.partition("/")
    return int(count), int(seconds or 60)


def _who(runtime: Runtime) -> tuple[str, bool]:
    """A key naming the caller without storing a secret: a token's hash, a console user (the
    console's session loader ran before us), else the client IP."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        presented = header[len("Bearer "):].strip()
        if _match(presented, runtime.settings.api_tokens) is not None:
            return "token:" + hashlib.sha256(presented.encode()).hexdigest()[:16], True
    console_user = g.get("console_user")
    if console_user is not None:
        return f"user:{console_user.name}", True
    return f"ip:{request.remote_addr or 'unknown'}", False


class FixedWindow:
    """The shared fixed-window counter (`LiveState.count_hit`), paused after a Redis fault."""

    def __init__(self) -> None:
        self._paused_until = 0.0

    def hit(self, state: LiveState, who: str, window: int, seconds: int) -> int | None:
        """The count in this window after this request, or None when Redis is unavailable."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            return state.count_hit(state.keys.rate_window(who, window), seconds + 1)
        except redis_lib.RedisError:
            self._paused_until = time.monotonic() + REDIS_PAUSE_SECONDS
            return None


def init_app(app: Flask) -> None:
    limiter = FixedWindow()

    @app.before_request
    def _limit_api() -> tuple[Response, int, dict[str, str]] | None:
        # every request passes here, each webhook too: one prefix test on the object, not the proxy
        if not this_request().path.startswith(LIMITED_PREFIXES):
            return None
        runtime: Runtime = current_app.extensions["hotline"]
        limit, seconds = parse_limit(runtime.settings.api_rate_limit)
        if limit <= 0:
            return None
        who, authenticated = _who(runtime)
        if not authenticated:
            limit = max(10, limit // UNAUTHENTICATED_SHARE)
        now = time.time()
        window = int(now // seconds)
        count = limiter.hit(runtime.state, who, window, seconds)
        if count is None or count <= limit:
            return None
        retry_after = max(1, math.ceil((window + 1) * seconds - now))
        body = jsonify(error="rate_limited", retry_after=retry_after,
                       reason=f"more than {limit} requests in {seconds} s; retry after {retry_after} s")
        return body, 429, {"Retry-After": str(retry_after)}
