"""gunicorn's settings for the web process: `gunicorn -c python:webhooks.gunicorn_conf` (the
Procfile, `hotline serve`, the benchmarks). Command-line flags still override them."""

from __future__ import annotations

import os

from webhooks.settings import web_concurrency

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = web_concurrency()
timeout = 30  # a sync worker stuck this long is replaced; Twilio itself gives up after 15 s
