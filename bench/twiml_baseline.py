"""The baseline: a bare Flask app answering every webhook with constant TwiML, no I/O at all.

Served by the same gunicorn command as the app, so the ratio measures what our work costs.
"""

from __future__ import annotations

from flask import Flask, Response

TWIML = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-GB" voice="Polly.Amy">'
         b"Hello. Press 1 for support.</Say><Hangup/></Response>")


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def ready() -> str:
        return "ok"

    @app.post("/voice/<path:anything>")
    def webhook(anything: str) -> Response:
        return Response(TWIML, mimetype="text/xml")

    return app
