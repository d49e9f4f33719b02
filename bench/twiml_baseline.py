"""The baseline: a bare Flask app answering every webhook with constant TwiML, no I/O at all.

Served by the same gunicorn command as the app, so the ratio measures what our work costs. Each
path answers with TwiML of the shape the app's answer has there (a Gather naming the menu, a
Dial naming an agent, its whisper and its action), rendered once at import: the load driver
then walks the same call flow, parses the same kind of answers and spends the same CPU on
both sides of the comparison. Only the server's work differs.
"""

from __future__ import annotations

from flask import Flask, Response
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

SAY = {"language": "en-GB", "voice": "Polly.Amy"}


def _answers() -> dict[str, bytes]:
    incoming = VoiceResponse()
    incoming.say("Good evening, and thank you for calling Example Energy, customer service.", **SAY)
    incoming.say("This call may be recorded for quality and training purposes.", **SAY)
    gather = Gather(action="/voice/menu?lang=en&repeat=0", method="POST", num_digits=1, timeout=6)
    gather.say("For support, press 1.", **SAY)
    incoming.append(gather)
    incoming.redirect("/voice/menu?lang=en&repeat=0&noinput=1", method="POST")

    menu = VoiceResponse()
    menu.say("Thank you. We are connecting you to an agent.", **SAY)
    dial = Dial(action="/voice/dial-result?queue=support&lang=en", answer_on_bridge=True, caller_id="+37255010000",
                method="POST", record="record-from-answer-dual", ring_tone="ee", timeout=10,
                recording_status_callback="/voice/recording?kind=call&queue=support",
                recording_status_callback_event="completed")
    leg = "call=CA00000000000000000000000000000000&agent=a001"
    dial.client("a001", status_callback=f"/voice/agent-leg?{leg}&attempt=1",
                status_callback_event="initiated ringing answered completed", url=f"/voice/whisper?{leg}&lang=en")
    menu.append(dial)

    whisper = VoiceResponse()
    whisper.say("Call from +37255010000 for support.", **SAY)

    hangup = VoiceResponse()
    hangup.hangup()
    return {"incoming": str(incoming).encode(), "menu": str(menu).encode(), "whisper": str(whisper).encode(),
            "dial-result": str(hangup).encode()}


ANSWERS = _answers()


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def ready() -> str:
        return "ok"

    @app.post("/voice/<path:anything>")
    def webhook(anything: str) -> Response:
        if anything not in ANSWERS:  # status callbacks: nothing to say, as the app answers them
            return Response(status=204)
        return Response(ANSWERS[anything], mimetype="text/xml")

    return app
