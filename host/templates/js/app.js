// {{name}}: a ferry plugin in JavaScript.
//
// Drops the event types listed in its config and marks every other event
// with `"processed_by": "{{name}}"`. Change `process` to do your own work.
//
// Config (the plugin's `[config]` table in ferry.toml, handed to `init` as
// JSON): `drop = ["session.data", "user.login"]`.
//
// A batch arrives as one Uint8Array of JSON Lines: each event's JSON object
// on its own line, with Teleport's fields (`event` is the type, `uid` the id,
// `time`, `ei`, `sid`). Return `{ verdicts, lines, routes }`: one verdict per
// event, in order (`{ tag: "keep" }`, `{ tag: "replace" }`, `{ tag: "drop" }`,
// `{ tag: "route", val: { sinks: n, replaced } }` or `{ tag: "fail", val:
// reason }`); `lines`, the new JSON of each replaced event on its own line,
// encoded once (a Uint8Array); `routes`, the sink lists that route verdicts
// point at by index. One buffer each way is what keeps a JavaScript plugin
// fast: every value handed across on its own costs time in this runtime.

import { count } from "ferry:plugin/host@0.2.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const DROP = { tag: "drop" };
const REPLACE = { tag: "replace" };

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

  process(events) {
    const verdicts = [];
    const lines = [];
    for (const line of decoder.decode(events).split("\n")) {
      if (line === "") continue;
      const value = JSON.parse(line);
      if (drop.has(value.event)) {
        verdicts.push(DROP);
        continue;
      }
      value.processed_by = "{{name}}";
      lines.push(JSON.stringify(value));
      verdicts.push(REPLACE);
    }
    count("dropped", BigInt(verdicts.filter((v) => v === DROP).length));
    return { verdicts, lines: encoder.encode(lines.join("\n")), routes: [] };
  },
};
