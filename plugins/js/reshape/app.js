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
// Events cross as JSON bytes (Uint8Array) and changed events go back as
// bytes: strings returned to the host are expensive in this runtime, so the
// only strings returned are the few sink names of routed events.

import { count } from "ferry:plugin/host@0.1.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const KEEP = { tag: "keep" };

let rename = new Map();
let lowercase = new Set();
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
  routes = compiled;
}

/// Returns the changed event, or null when nothing in it is to change.
function reshape(event) {
  let changed = false;
  const out = {};
  for (const [key, value] of Object.entries(event)) {
    let name = key;
    let v = value;
    if (rename.has(key)) {
      name = rename.get(key);
      changed = true;
    }
    if (typeof v === "string" && lowercase.has(name)) {
      const lower = v.toLowerCase();
      if (lower !== v) {
        v = lower;
        changed = true;
      }
    }
    out[name] = v;
  }
  return changed ? out : null;
}

function outcome(event) {
  const route = routes.find((r) => r.pattern.test(event.eventType));
  let json;
  if (rename.size > 0 || lowercase.size > 0) {
    let parsed;
    try {
      parsed = JSON.parse(decoder.decode(event.json));
    } catch (err) {
      return { tag: "fail", val: `not JSON: ${err}` };
    }
    const changed = reshape(parsed);
    if (changed !== null) json = encoder.encode(JSON.stringify(changed));
  }
  if (route) return { tag: "route", val: { sinks: route.sinks, json } };
  return json === undefined ? KEEP : { tag: "replace", val: json };
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

  process(batch) {
    const outcomes = batch.map(outcome);
    const routed = outcomes.reduce((n, o) => n + (o.tag === "route" ? 1 : 0), 0);
    if (routed > 0) count("routed", BigInt(routed));
    return outcomes;
  },
};
