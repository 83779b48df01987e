// {{name}}: a ferry plugin in JavaScript.
//
// Drops the event types listed in its config and marks every other event
// with `"processed_by": "{{name}}"`. Change `process` to do your own work.
//
// Config (the plugin's `[config]` table in ferry.toml, handed to `init` as
// JSON): `drop = ["session.data", "user.login"]`.
//
// Events arrive as objects: the JSON bytes in `event.json` (a Uint8Array),
// plus `id`, `eventType`, `time`, `index` (a BigInt) and `sessionId` already
// parsed out, so a decision on the type needs no JSON parsing. Return one
// outcome per event: `{ tag: "keep" }`, `{ tag: "replace", val: bytes }`,
// `{ tag: "drop" }`, `{ tag: "route", val: { sinks: [...], json: bytes } }`
// or `{ tag: "fail", val: reason }`. Return bytes, not strings: strings
// handed back to ferry cost far more in this runtime.

import { count } from "ferry:plugin/host@0.1.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const DROP = { tag: "drop" };

let drop = new Set();

export const guest = {
  init(config) {
    const settings = JSON.parse(config);
    const types = settings.drop ?? [];
    if (!Array.isArray(types) || !types.every((t) => typeof t === "string")) {
      // Throwing refuses the config: ferry prints it with the plugin's name.
      throw "`drop` must be a list of event types";
    }
    drop = new Set(types);
  },

  process(batch) {
    const outcomes = batch.map((event) => {
      if (drop.has(event.eventType)) return DROP;
      const value = JSON.parse(decoder.decode(event.json));
      value.processed_by = "{{name}}";
      return { tag: "replace", val: encoder.encode(JSON.stringify(value)) };
    });
    count("dropped", BigInt(outcomes.filter((o) => o === DROP).length));
    return outcomes;
  },
};
