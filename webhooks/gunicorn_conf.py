"""gunicorn's settings for the web process: `gunicorn -c python:webhooks.gunicorn_conf` (the
Procfile, `hotline serve`, the benchmarks). Command-line flags still override them."""

from __future__ import annotations

import gc
import os
from typing import Any

from webhooks.settings import web_concurrency

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = web_concurrency()
timeout = 30  # a sync worker stuck this long is replaced; Twilio itself gives up after 15 s


def post_worker_init(worker: Any) -> None:
    """The worker has loaded the app: what it holds now (modules, rules, routes, ~150k objects)
    lives as long as the process, so it is moved out of the garbage collector's sight. A full
    collection, which Python starts now and then in the middle of some request, then walks
    only what was made since: ~1 ms instead of ~80 ms (several times that on a busy machine),
    which set the p99 of webhooks at a steady rate."""
    gc.freeze()
