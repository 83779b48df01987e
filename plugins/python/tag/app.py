"""tag: a ferry plugin in Python.

Adds fixed fields to every event (say, which pipeline or environment it
passed through) and drops the event types an operator does not want to
forward (say, the chatty `sftp` events).

Config (the plugin's `[config]` table in ferry.toml, handed to `init` as JSON):

    [config]
    tags = { pipeline = "ferry", env = "prod" }   # fields to set on every event
    drop = ["sftp", "desktop.*"]                   # event types to drop (globs)

A tag overwrites a field of the same name. An event whose type matches a
`drop` pattern is dropped (counted by ferry), whatever its tags.

The batch crosses as one buffer of JSON Lines and the tagged events go back
as one buffer: every value handed across on its own costs time. Tagging
usually needs no JSON parsing: when no tag names a field the event already
has, the tags are appended to the event's bytes as they are (parsing and
writing the JSON again is what costs most in a plugin, several times the
rest). Dropping by type reads the type with the standard `json` module.
"""

import fnmatch
import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

KEEP = types.Verdict_Keep()
DROP = types.Verdict_Drop()
REPLACE = types.Verdict_Replace()


# The plugin's state lives in the module: componentize-py may create a new
# `Guest` object for each call, but the module lives as long as the instance.
state = {"tags": {}, "drop": None, "suffix": b"", "names": []}


def tagged(data: bytes) -> bytes:
    """The event's JSON object with the tags set."""
    # An escape (`\u…`) could spell a tag's name differently, so any event
    # that might hold a tag's field, or has escapes, takes the slow way.
    if b"\\u" not in data and not any(name in data for name in state["names"]):
        body = data.rstrip()[:-1].rstrip()
        separator = b"" if body.endswith(b"{") else b","
        return body + separator + state["suffix"] + b"}"
    value = json.loads(data)
    value.update(state["tags"])
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Guest(exports.Guest):
    def init(self, config: str) -> None:
        try:
            settings = json.loads(config)
        except ValueError as err:
            raise Err(f"config is not JSON: {err}")
        if not isinstance(settings, dict):
            raise Err("config must be a table")
        unknown = sorted(set(settings) - {"tags", "drop"})
        if unknown:
            raise Err(f"unknown config key `{unknown[0]}` (expected `tags` or `drop`)")
        tags = settings.get("tags", {})
        if not isinstance(tags, dict):
            raise Err("`tags` must be a table of field = value")
        drop = settings.get("drop", [])
        if not isinstance(drop, list) or not all(isinstance(p, str) for p in drop):
            raise Err("`drop` must be a list of event-type patterns")
        state["tags"] = tags
        # `"name":value,…` ready to append, and each name as it would be
        # written, to tell when an event may already have the field.
        state["suffix"] = json.dumps(tags, ensure_ascii=False, separators=(",", ":"))[1:-1].encode()
        state["names"] = [json.dumps(name, ensure_ascii=False).encode() for name in tags]
        # One regular expression for all patterns: one match call per event.
        state["drop"] = re.compile("|".join(fnmatch.translate(p) for p in drop)) if drop else None

    def process(self, events: bytes) -> types.Output:
        drop = state["drop"]
        tags = state["tags"]
        verdicts = []
        lines = []
        dropped = 0
        # Every event ends with a line break: the last piece is empty.
        for line in events.split(b"\n")[:-1]:
            if drop is not None:
                try:
                    event_type = json.loads(line).get("event", "")
                except ValueError as err:
                    verdicts.append(types.Verdict_Fail(f"event is not JSON: {err}"))
                    continue
                if isinstance(event_type, str) and drop.match(event_type):
                    verdicts.append(DROP)
                    dropped += 1
                    continue
            if tags:
                lines.append(tagged(line))
                verdicts.append(REPLACE)
            else:
                verdicts.append(KEEP)
        if dropped:
            host.count("dropped_by_type", dropped)
        return types.Output(verdicts, b"\n".join(lines), [])
