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
// changed event keeps its fields in their original order.
//
// The batch crosses as one Uint8Array of JSON Lines, decoded at once, and the
// changed events go back as one Uint8Array, encoded at once: each value handed
// across on its own, and each TextDecoder or TextEncoder call, has a fixed
// cost in this runtime that would dwarf the work on a 400-byte event. Routed
// events name their sinks by index into the configured routes, so no string
// goes back per event. StarlingMonkey interprets JavaScript (no JIT): every
// call into the runtime costs about a microsecond, so the code below makes
// few calls per event — one parse for the whole batch, edits in the event's
// own text, verdicts and route lookups made once and reused.

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
// What `reshape` reads per event, worked out once from the config: plain
// arrays walked by index, and each key already quoted as JSON (every call
// into the runtime has a fixed cost in this interpreter).
let toLowercase = [];
let toRename = [];
// The two verdicts of each route, unchanged and replaced, made once.
let routeVerdicts = [];
// Type -> index of its route (-1 for none), filled as types are seen: a
// batch holds few types, and a regular expression runs in an interpreter.
let routeOf = new Map();

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
  toLowercase = lowercaseSources.map(([source]) => ({ key: source, quoted: JSON.stringify(source) }));
  routeVerdicts = routes.map((_, sinks) => [false, true].map((replaced) => ({ tag: "route", val: { sinks, replaced } })));
  toRename = [...rename].map(([from, to]) => ({ key: from, quoted: JSON.stringify(from), to: JSON.stringify(to) }));
  routeOf = new Map();
}

/// The new JSON text of `event` (parsed from `text`), or null when nothing in
/// it is to change. Values are lowercased in place.
///
/// Writing the whole object again is the slowest step in this interpreter,
/// so the edits are made in the event's own text when that is safe: the text
/// holds no backslash (so no key or value is spelt with escapes), and each
/// edited key occurs there, quoted, exactly once; the object has that key at
/// its top level, so that one occurrence is it. Otherwise the object is
/// written again.
function reshape(event, text) {
  let edits = null;
  for (let i = 0; i < toLowercase.length; i++) {
    const field = toLowercase[i];
    const value = event[field.key];
    if (typeof value !== "string") continue;
    const lower = value.toLowerCase();
    if (lower === value) continue;
    event[field.key] = lower;
    (edits ??= []).push({ quoted: field.quoted, before: `:${JSON.stringify(value)}`, after: `:${JSON.stringify(lower)}` });
  }
  for (let i = 0; i < toRename.length; i++) {
    const field = toRename[i];
    // A plain read first: most events lack the field, and a call costs more.
    if (event[field.key] !== undefined && Object.hasOwn(event, field.key)) (edits ??= []).push(field);
  }
  if (edits === null) return null;
  let edited = text.includes("\\") ? null : text;
  for (let i = 0; i < edits.length && edited !== null; i++) edited = edit(edited, edits[i]);
  return edited !== null ? edited : copyRenamed(event);
}

/// `text` with one edit made at the one occurrence of its quoted key: the
/// key renamed (`to`), or the value after it changed from `before` to
/// `after` (both with their leading colon); null when the key does not occur
/// exactly once, followed by what the edit expects.
function edit(text, { quoted, to, before, after }) {
  const start = text.indexOf(quoted);
  if (start < 0 || text.indexOf(quoted, start + quoted.length) >= 0) return null;
  const end = start + quoted.length;
  if (to !== undefined) return text[end] === ":" ? text.slice(0, start) + to + text.slice(end) : null;
  return text.startsWith(before, end) ? text.slice(0, end) + after + text.slice(end + before.length) : null;
}

function copyRenamed(event) {
  const copy = {};
  for (const [name, value] of Object.entries(event)) copy[rename.get(name) ?? name] = value;
  return JSON.stringify(copy);
}

/// The verdict for one event's JSON text (`parsed` from it, or undefined
/// when the batch could not be parsed at once), with its new text pushed on
/// `lines` when it changes.
function verdict(text, parsed, lines) {
  if (parsed === undefined) {
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return { tag: "fail", val: `not JSON: ${err}` };
    }
  }
  const changed = rename.size > 0 || lowercase.size > 0 ? reshape(parsed, text) : null;
  if (changed !== null) lines.push(changed);
  const type = typeof parsed.event === "string" ? parsed.event : "";
  let route = routeOf.get(type);
  if (route === undefined) {
    route = routes.findIndex((r) => r.pattern.test(type));
    routeOf.set(type, route);
  }
  if (route >= 0) return routeVerdicts[route][changed === null ? 0 : 1];
  return changed === null ? KEEP : REPLACE;
}

/// Every event of the batch parsed by one call (each call has a fixed cost
/// here that parsing a small event does not dwarf), or null when one of
/// them is not JSON; then each is parsed alone, to fail only that one.
function parseAll(texts) {
  try {
    const parsed = JSON.parse(`[${texts.join(",")}]`);
    return parsed.length === texts.length ? parsed : null;
  } catch {
    return null;
  }
}

function output(events) {
  const texts = decoder.decode(events).split("\n");
  texts.pop(); // every event ends with a line break
  const configured = rename.size > 0 || lowercase.size > 0 || routes.length > 0;
  const lines = [];
  const verdicts = new Array(texts.length);
  const parsed = configured ? parseAll(texts) : null;
  for (let i = 0; i < texts.length; i++) {
    if (!configured) verdicts[i] = KEEP;
    else verdicts[i] = verdict(texts[i], parsed === null ? undefined : parsed[i], lines);
  }
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
