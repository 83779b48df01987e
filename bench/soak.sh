#!/bin/sh
# The soak run (not in CI; about 35 minutes): two ferry processes, one reading
# a Teleport stand-in whose log grows, one following a rotated file, into a
# Logstash stand-in that fails 10 % of requests, answers 403 for 20 s every
# 7 minutes and 503 for a minute mid-run; SIGHUP every 10 s, the identity
# issued again every 5 minutes. See bench/src/soak.rs; the report lands in
# target/soak/report.md. Arguments go to ferry-soak (`--minutes 5` for a
# short run, `--help`).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked -p ferry
cargo build --release --locked -p ferry-bench --bin ferry-soak
plugin=target/wasm-plugins/wasm32-wasip2/release/redact.wasm
if [ -f "$plugin" ]; then set -- --plugin "$plugin" "$@"; fi
exec target/release/ferry-soak --ferry target/release/ferry "$@"
