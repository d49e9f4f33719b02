"""recordings: the client card store (SQL) — models, migrations, the single card writer, jobs.

`db` owns the engine and sessions, `models` the tables, `card` every write to the card,
`jobs` the RQ functions that apply webhook events and Twilio callbacks. See docs/card.md.
"""
