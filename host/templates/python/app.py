"""{{name}}: a ferry plugin in Python.

Drops the event types listed in its config and marks every other event with
`"processed_by": "{{name}}"`. Change `process` to do your own work.

Config (the plugin's `[config]` table in ferry.toml, handed to `init` as
JSON): `drop = ["session.data", "user.login"]`.

A batch arrives as one `bytes` buffer of JSON Lines: each event's JSON
object on its own line, with Teleport's fields (`event` is the type, `uid`
the id, `time`, `ei`, `sid`). Return a `types.Output` with one verdict per
event, in order: `Verdict_Keep()`, `Verdict_Replace()`, `Verdict_Drop()`,
`Verdict_Route(types.Route(n, replaced))` or `Verdict_Fail(reason)`. The new
JSON of each replaced event goes, in order, on its own line of
`Output.lines` (one `bytes`), and `Output.routes` lists the sink lists that
`Route` verdicts point at by index. One buffer each way is what keeps a
Python plugin fast: every value handed across on its own costs time.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

DROP = types.Verdict_Drop()
REPLACE = types.Verdict_Replace()

# The plugin's state lives in the module, not in the `Guest` object:
# componentize-py may create a new `Guest` for each call, while the module
# lives as long as the plugin's instance.
state = {"drop": set()}


class Guest(exports.Guest):
    def init(self, config: str) -> None:
        settings = json.loads(config)
        drop = settings.get("drop", [])
        if not isinstance(drop, list) or not all(isinstance(t, str) for t in drop):
            # Raising Err refuses the config: ferry prints it with the plugin's name.
            raise Err("`drop` must be a list of event types")
        state["drop"] = set(drop)

    def process(self, events: bytes) -> types.Output:
        drop = state["drop"]
        verdicts = []
        lines = []
        for line in events.split(b"\n")[:-1]:
            value = json.loads(line)
            if value.get("event") in drop:
                verdicts.append(DROP)
                continue
            value["processed_by"] = "{{name}}"
            lines.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
            verdicts.append(REPLACE)
        host.count("dropped", sum(1 for v in verdicts if v is DROP))
        return types.Output(verdicts, "\n".join(lines).encode(), [])
