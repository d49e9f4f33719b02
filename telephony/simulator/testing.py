"""Serving a WSGI app for real on 127.0.0.1 (port 0) in a thread: tests and the demo."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


@contextmanager
def served(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Yield the base URL of `app` served by werkzeug; shut it down afterwards."""
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True, name="served-app")
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
