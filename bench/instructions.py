"""Instructions per webhook: the web process's own work on whole call flows, counted, not timed.

    .venv/bin/python bench/instructions.py [--against REV] [--calls 100] [--database postgres]

A shared 2-core machine changes speed from minute to minute, so a change of a few percent in
the app's CPU is lost in timed runs (bench/compare.py needs many rounds to see 10%). This
counts machine instructions instead, with valgrind's callgrind: the same code, inputs and
services give the same count within ~0.1% whatever else the machine is doing.

The app runs in this process (`create_app()`, its WSGI callable called directly, no server)
against the real Redis server (db 15, a fresh prefix) and PostgreSQL or SQLite, as
bench/webhooks.py sets them up. Each call is the flow of bench/calls.py: incoming, menu choice,
the agent's whisper, the Dial action, the final status callback, signed. Only the measured calls
are counted (callgrind's counters are dumped before and after them); the instructions of the
Redis and database servers are not (bench/compare.py reads their CPU). With `--against`, the
other revision is checked out into a temporary worktree and measured the same way, and the
ratio is printed.

Needs valgrind (Debian's package); under it a run takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measure(root: Path, calls: int, database: str) -> int:
    """Instructions per webhook of the tree at `root` (a child process under callgrind)."""
    with tempfile.TemporaryDirectory(prefix="hotline-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'bench'}"}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               str(root / "bench" / "instructions.py"), "--flows", str(calls), "--database", database]
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the measured run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        # dumps: out.1 = start-up (before the measured calls), out.2 = the calls, then the rest
        dump = Path(f"{out}.2")
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) // (calls * 5)
    raise SystemExit("callgrind wrote no totals")


def flows(count: int, database: str) -> None:
    """Run inside callgrind: set up, warm up, then `count` calls between two counter dumps."""
    from servers import ACCOUNT_SID, AUTH_TOKEN, HOTLINE_NUMBER, Stack
    from twilio.request_validator import RequestValidator
    from werkzeug.test import EnvironBuilder

    stack = Stack(agents=100, database=database).prepare()
    os.environ.update(stack.env())
    from webhooks import create_app
    from webhooks.metrics import flush_latency

    app = create_app()
    validator = RequestValidator(AUTH_TOKEN)
    base_url = "http://127.0.0.1:8000"

    def post(url: str, params: dict[str, str]) -> bytes:
        url = url if url.startswith("http") else base_url + url
        path, _, query = url[len(base_url):].partition("?")
        environ = EnvironBuilder(base_url=base_url, path=path, query_string=query or None, method="POST",
                                 data=params, headers={"X-Twilio-Signature": validator.compute_signature(url, params)},
                                 ).get_environ()
        status: list[str] = []
        body = b"".join(app(environ, lambda s, _h, _e=None: status.append(s)))
        if not status or not status[0].startswith(("200", "204")):
            raise SystemExit(f"{path}: {status} {body[:300]!r}")
        return body

    def call(n: int) -> None:
        sid = "CA" + uuid.uuid4().hex
        caller = f"+37255{n % 1_000_000:06d}"
        base = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": caller, "To": HOTLINE_NUMBER, "Caller": caller,
                "Called": HOTLINE_NUMBER, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
        gather = ET.fromstring(post("/voice/incoming", base)).find("Gather")
        assert gather is not None
        live = {**base, "CallStatus": "in-progress"}
        dial = ET.fromstring(post(gather.attrib["action"], {**live, "Digits": "1"})).find("Dial")
        assert dial is not None, "no agent was dialled"
        target: Any = dial.find("Client")
        child = "CA" + uuid.uuid4().hex
        post(target.attrib["url"], {**live, "CallSid": child, "ParentCallSid": sid, "Direction": "outbound-dial",
                                    "To": f"client:{(target.text or '').strip()}"})
        post(dial.attrib["action"], {**live, "DialCallStatus": "completed", "DialCallSid": child,
                                     "DialCallDuration": "0", "DialBridged": "true"})
        post("/voice/status", {**base, "CallStatus": "completed", "SequenceNumber": "0", "CallDuration": "20"})

    def dump() -> None:
        subprocess.run(["callgrind_control", "--dump", str(os.getpid())], capture_output=True, check=False)

    try:
        for n in range(20):  # warm up: compiled statements, loaded scripts, route URLs
            call(n)
        dump()
        for n in range(count):
            call(10_000 + n)
        dump()
    finally:
        flush_latency(app.extensions["hotline"])  # its timer would write after the keys are gone
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="another revision to measure the same way")
    parser.add_argument("--calls", type=int, default=100, help="measured calls (5 webhooks each)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--flows", type=int, help=argparse.SUPPRESS)  # the measured child itself
    args = parser.parse_args()
    if args.flows is not None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return flows(args.flows, args.database)
    print(f"hotline instructions — {time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}, "
          f"{args.database}, {args.calls} calls × 5 webhooks, counted by callgrind in the web process")
    this = measure(ROOT, args.calls, args.database)
    print(f"  this tree: {this:,} instructions per webhook")
    if args.against:
        with tempfile.TemporaryDirectory(prefix="hotline-against-") as tmp:
            tree = Path(tmp) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.against], cwd=ROOT, check=True)
            try:
                (tree / "bench" / "instructions.py").write_bytes((HERE / "instructions.py").read_bytes())
                (tree / "bench" / "servers.py").write_bytes((HERE / "servers.py").read_bytes())
                other = measure(tree, args.calls, args.database)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        print(f"  {args.against}: {other:,} instructions per webhook")
        print(f"  this tree / {args.against}: {this / other:.3f}")


if __name__ == "__main__":
    main()
