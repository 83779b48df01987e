// reshape: a ferry plugin in JavaScript.
//
// Renames fields, lowercases values, and routes events to sinks by type:
// what a Logstash pipeline downstream would otherwise do with mutate and if
// blocks, done before the events leave ferry.
//
// Config (the plugin's `[config]` table in ferry.toml, handed to `init` as JSON):
//
//   [config]
//   rename = { "addr.remote" = "remote_addr" }   # top-level field -> new name, in place
//   lowercase = ["user"]                          # string fields to lowercase
//   routes = [{ types = "session.*", sinks = ["sessions"] }]   # first match wins
//
// An event that nothing changes is kept as it came (its bytes untouched); a
// changed event is re-serialised with its fields in their original order.
//
// The batch crosses as one Uint8Array of JSON Lines, decoded at once, and the
// changed events go back as one Uint8Array, encoded at once: each value handed
// across on its own, and each TextDecoder or TextEncoder call, has a fixed
// cost in this runtime that would dwarf the work on a 400-byte event. Routed
// events name their sinks by index into the configured routes, so no string
// goes back per event.

import { count } from "ferry:plugin/host@0.2.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const KEEP = { tag: "keep" };
const REPLACE = { tag: "replace" };

let rename = new Map();
let lowercase = new Set();
// Each field to lowercase as it is named before renaming: [source, name].
let lowercaseSources = [];
let routes = [];

/// A glob (`*` matches any run of characters) as an anchored RegExp.
function glob(pattern) {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

function table(value, key) {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw `\`${key}\` must be a table`;
  }
  return value;
}

function strings(value, key) {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((s) => typeof s === "string")) {
    throw `\`${key}\` must be a list of strings`;
  }
  return value;
}

function configure(settings) {
  for (const key of Object.keys(settings)) {
    if (!["rename", "lowercase", "routes"].includes(key)) {
      throw `unknown config key \`${key}\` (expected \`rename\`, \`lowercase\` or \`routes\`)`;
    }
  }
  const renames = table(settings.rename, "rename");
  for (const [from, to] of Object.entries(renames)) {
    if (typeof to !== "string") throw `\`rename.${from}\` must be a string`;
  }
  const routeList = settings.routes === undefined ? [] : settings.routes;
  if (!Array.isArray(routeList)) throw "`routes` must be a list of { types, sinks }";
  const compiled = routeList.map((route, n) => {
    const where = `routes[${n}]`;
    const { types, sinks } = table(route, where);
    if (typeof types !== "string") throw `\`${where}.types\` must be an event-type pattern`;
    const names = strings(sinks, `${where}.sinks`);
    if (names.length === 0) throw `\`${where}.sinks\` must name at least one sink`;
    return { pattern: glob(types), sinks: names };
  });
  rename = new Map(Object.entries(renames));
  lowercase = new Set(strings(settings.lowercase, "lowercase"));
  lowercaseSources = [];
  for (const name of lowercase) {
    if (!rename.has(name)) lowercaseSources.push([name, name]);
    for (const [from, to] of rename) if (to === name) lowercaseSources.push([from, name]);
  }
  routes = compiled;
}

/// The JSON text of `event` as configured, or null when nothing in it is to
/// change. Values are lowercased in place. Fields are renamed in the written
/// text when the key occurs there exactly once (then it is the top-level
/// key: a key inside a string value would have its quotes escaped), so the
/// field keeps its place without copying the object, which is slow in this
/// interpreter; otherwise the object is copied key by key.
function reshape(event) {
  let changed = false;
  for (const [source] of lowercaseSources) {
    const value = event[source];
    if (typeof value === "string") {
      const lower = value.toLowerCase();
      if (lower !== value) {
        event[source] = lower;
        changed = true;
      }
    }
  }
  const present = [];
  for (const key of rename.keys()) {
    if (Object.prototype.hasOwnProperty.call(event, key)) present.push(key);
  }
  if (present.length === 0) return changed ? JSON.stringify(event) : null;
  let text = JSON.stringify(event);
  for (const key of present) {
    const pattern = `${JSON.stringify(key)}:`;
    const at = text.indexOf(pattern);
    if (!PLAIN_KEY.test(key) || at < 0 || text.indexOf(pattern, at + 1) >= 0) return copyRenamed(event);
    text = `${text.slice(0, at)}${JSON.stringify(rename.get(key))}:${text.slice(at + pattern.length)}`;
  }
  return text;
}

/// Keys whose JSON spelling needs no escapes.
const PLAIN_KEY = /^[A-Za-z0-9_.@-]+$/;

function copyRenamed(event) {
  const copy = {};
  for (const [name, value] of Object.entries(event)) copy[rename.get(name) ?? name] = value;
  return JSON.stringify(copy);
}

/// The verdict for one event's JSON text, with its new text pushed on
/// `lines` when it changes.
function verdict(text, lines) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { tag: "fail", val: `not JSON: ${err}` };
  }
  const changed = rename.size > 0 || lowercase.size > 0 ? reshape(parsed) : null;
  if (changed !== null) lines.push(changed);
  const type = typeof parsed.event === "string" ? parsed.event : "";
  const route = routes.findIndex((r) => r.pattern.test(type));
  if (route >= 0) return { tag: "route", val: { sinks: route, replaced: changed !== null } };
  return changed === null ? KEEP : REPLACE;
}

function output(events) {
  const texts = decoder.decode(events).split("\n");
  texts.pop(); // every event ends with a line break
  const configured = rename.size > 0 || lowercase.size > 0 || routes.length > 0;
  const lines = [];
  const verdicts = configured ? texts.map((text) => verdict(text, lines)) : texts.map(() => KEEP);
  return { verdicts, lines: encoder.encode(lines.join("\n")), routes: routes.map((r) => r.sinks) };
}

export const guest = {
  init(config) {
    let settings;
    try {
      settings = JSON.parse(config);
    } catch (err) {
      throw `config is not JSON: ${err}`;
    }
    configure(table(settings, "config"));
  },

  process(events) {
    const result = output(events);
    const routed = result.verdicts.reduce((n, v) => n + (v.tag === "route" ? 1 : 0), 0);
    if (routed > 0) count("routed", BigInt(routed));
    return result;
  },
};
