"""{{name}}: a ferry plugin in Python.

Drops the event types listed in its config and marks every other event with
`"processed_by": "{{name}}"`. Change `process` to do your own work.

Config (the plugin's `[config]` table in ferry.toml, handed to `init` as
JSON): `drop = ["session.data", "user.login"]`.

Events arrive as `types.Event` objects: the JSON bytes in `event.json`, plus
`id`, `event_type`, `time`, `index` and `session_id` already parsed out, so
a decision on the type needs no JSON parsing. Return one outcome per event:
`Outcome_Keep()`, `Outcome_Replace(json_bytes)`, `Outcome_Drop()`,
`Outcome_Route(types.Route(sinks, json_bytes_or_None))` or
`Outcome_Fail(reason)`. Return bytes, not text: it is faster.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

DROP = types.Outcome_Drop()

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

    def process(self, batch):
        drop = state["drop"]
        outcomes = []
        for event in batch:
            if event.event_type in drop:
                outcomes.append(DROP)
                continue
            value = json.loads(event.json)
            value["processed_by"] = "{{name}}"
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            outcomes.append(types.Outcome_Replace(text.encode()))
        host.count("dropped", sum(1 for o in outcomes if o is DROP))
        return outcomes
