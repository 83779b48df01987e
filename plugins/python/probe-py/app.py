"""probe-py: reports what the sandbox lets a Python plugin see. For
ferry's sandbox tests only; never load it in a real pipeline.

Config `mode`:
- "observe" fails every event with a JSON report: whether a file could be
  read or a socket opened, the environment, the clock, and whether random
  numbers work;
- "loop" never returns (the deadline must cut it);
- "hoard" allocates without bound (the memory cap must cut it).
"""

import json
import os
import random
import socket
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


def attempt(action):
    try:
        return f"allowed: {action()!r}"[:200]
    except Exception as err:
        return f"denied: {type(err).__name__}"


def connect():
    # A numeric address: no name lookup, straight to WASI's sockets.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(("127.0.0.1", 9))
        return "connected"


# componentize-py may create a new `Guest` for each call; state lives here.
settings = {"mode": "observe"}


class Guest(exports.Guest):
    def init(self, config: str) -> None:
        mode = json.loads(config).get("mode", "observe")
        if mode not in ("observe", "loop", "hoard"):
            raise Err(f"unknown mode {mode}")
        settings["mode"] = mode

    def process(self, events: bytes) -> types.Output:
        mode = settings["mode"]
        if mode == "loop":
            while True:
                pass
        if mode == "hoard":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        report = {
            "file": attempt(lambda: open("/etc/passwd").read(10)),
            "listdir": attempt(lambda: os.listdir("/")),
            "env": dict(os.environ),
            "net": attempt(connect),
            "time": time.time(),
            "random": 0 <= random.random() < 1 and len(os.urandom(16)) == 16,
        }
        verdict = types.Verdict_Fail(json.dumps(report, sort_keys=True))
        return types.Output([verdict] * events.count(b"\n"), b"", [])
