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

How it stays fast: in a Python plugin, each line of Python run per event
costs far more than the same work done by one call on the whole batch
(`bytes.count`, a regular expression, `split`, a list comprehension), which
runs as C. So the batch is read as a whole wherever that is safe:

- The type of every event is read from the batch's text by one regular
  expression, when the text is plain enough to be sure of it (no backslash,
  so nothing is spelt with escapes, and each line has exactly one quoted
  `"event"`, a key with a string value); only the events whose type may
  match a `drop` pattern are parsed, to be sure. Otherwise every event is
  parsed.
- The tags are appended to each event's bytes (`…,"pipeline":"ferry"}`)
  when the batch has no escapes and no tag names a field an event already
  has; otherwise each event is parsed, tagged and written again.
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
state = {"tags": {}, "drop": None, "drop_bytes": None, "suffix": b"", "names": []}


def tag_all(events: bytes, lines: list) -> list:
    """The lines (JSON objects, some of the lines of `events`) with the tags
    set: appended to each event's bytes, or, for an event where that may be
    wrong, by parsing and writing it again. The scans for escapes and tag
    names run once over the whole batch, and line by line only when the
    batch holds one."""
    suffix = state["suffix"]
    if b"\\u" not in events and not any(name in events for name in state["names"]):
        return [line[:-1] + suffix if closes(line) else tagged(line) for line in lines]
    return [line[:-1] + suffix if appendable(line) else tagged(line) for line in lines]


def closes(line: bytes) -> bool:
    """Whether the line ends with the `}` of a non-empty object, written
    tightly (`…x}`), so that `,"tag":…}` can take its place."""
    return len(line) > 2 and line[-1] == 0x7D and line[-2] not in b"{ \t\r"


def appendable(line: bytes) -> bool:
    """Whether the tags can be appended to this event's bytes: no escape
    (`\\u…`) that could spell a tag's name, no tag's name already in it, and
    a tight closing brace."""
    return b"\\u" not in line and not any(name in line for name in state["names"]) and closes(line)


def tagged(line: bytes) -> bytes:
    """One event's JSON object with the tags set, the slow way."""
    value = json.loads(line)
    value.update(state["tags"])
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


TYPE_KEY = b'"event"'
# The first `"event"` key with a plain string value in a line, and the rest
# of that line: at most one match per line.
TYPE_IN_LINE = re.compile(rb'"event":"([^"\\\n]*)"[^\n]*\n')
# A letter of `event` written as an escape, the one way to spell the key so
# that `TYPE_KEY` does not find it.
ESCAPED_LETTER = re.compile(rb"\\u00(?:65|76|6[eE]|74)")


def plain_types(events: bytes, count: int):
    """Each event's type as read from the batch's text, or None when the text
    is not plain enough to be sure.

    It is plain when each line holds exactly one quoted `"event"` (counted
    over the batch, and found once per line), a key with a plain string
    value, and no line spells the key with escapes. Then a line's value is
    its top-level type if it has one; if it has none, its type is the empty
    string.
    """
    if events.count(TYPE_KEY) != count or ESCAPED_LETTER.search(events):
        return None
    found = TYPE_IN_LINE.findall(events)
    return found if len(found) == count else None


def top_level_type(line: bytes) -> str:
    """The event's type, parsed; raises ValueError when it is not JSON."""
    value = json.loads(line)
    event_type = value.get("event", "") if isinstance(value, dict) else ""
    return event_type if isinstance(event_type, str) else ""


def to_drop(events: bytes, lines: list) -> dict:
    """Index -> verdict (DROP, or a failure) of the events not to tag."""
    drop, drop_bytes = state["drop"], state["drop_bytes"]
    if drop is None:
        return {}
    if drop.match(""):
        maybe = range(len(lines))
    else:
        # On ASCII text, a pattern matches the bytes as it matches the text.
        match = drop_bytes.match if events.isascii() else lambda t: drop.match(t.decode("utf-8", "replace"))
        read = plain_types(events, len(lines))
        maybe = range(len(lines)) if read is None else [i for i, t in enumerate(read) if match(t)]
    verdicts = {}
    for i in maybe:
        try:
            if drop.match(top_level_type(lines[i])):
                verdicts[i] = DROP
        except ValueError as err:
            verdicts[i] = types.Verdict_Fail(f"event is not JSON: {err}")
    return verdicts


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
        # `,"name":value,…}` to put in place of an event's closing brace, and
        # each name as it would be written, to tell when an event may
        # already have the field.
        state["suffix"] = b"," + json.dumps(tags, ensure_ascii=False, separators=(",", ":"))[1:].encode()
        state["names"] = [json.dumps(name, ensure_ascii=False).encode() for name in tags]
        # One regular expression for all patterns: one match call per event.
        pattern = "|".join(fnmatch.translate(p) for p in drop)
        state["drop"] = re.compile(pattern) if drop else None
        state["drop_bytes"] = re.compile(pattern.encode()) if drop else None

    def process(self, events: bytes) -> types.Output:
        # Every event ends with a line break: the last piece is empty.
        lines = events.split(b"\n")[:-1]
        decided = to_drop(events, lines)
        dropped = sum(1 for verdict in decided.values() if verdict is DROP)
        if dropped:
            host.count("dropped_by_type", dropped)
        if not state["tags"]:
            return types.Output([decided.get(i, KEEP) for i in range(len(lines))], b"", [])
        kept = [line for i, line in enumerate(lines) if i not in decided] if decided else lines
        verdicts = [decided.get(i, REPLACE) for i in range(len(lines))] if decided else [REPLACE] * len(lines)
        return types.Output(verdicts, b"\n".join(tag_all(events, kept)), [])
