"""A small local Twilio: REST subset, TwiML interpreter, scripted callers and agents.

It stands in for Twilio's cloud and knows only HTTP and TwiML: nothing here imports the
product's packages. See docs/simulator.md.
"""

from .calls import CallLeg, CallRecord, Recording, WebhookHit
from .clock import SimClock
from .core import NumberConfig, Simulator
from .parties import AgentBehaviour, CallerScript
from .rest import SimServer, create_sim_app
from .transcript import Line, Transcript

__all__ = [
    "AgentBehaviour", "CallLeg", "CallRecord", "CallerScript", "Line", "NumberConfig",
    "Recording", "SimClock", "SimServer", "Simulator", "Transcript", "WebhookHit",
    "create_sim_app",
]
