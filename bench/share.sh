#!/bin/sh
# The shared-export run (not in CI; about a minute): the same Teleport export
# (3 dates × 30 chunks × 200 events, each chunk stream answered after 300 ms)
# read by one ferry instance (`[leadership] slots = 1`) and then by three
# sharing it (`slots = 3`), each on a fresh database in a throwaway PostgreSQL
# (Debian's server, as ./test installs it), until every event is at the
# Logstash stand-in. See bench/src/share.rs; the report lands in
# target/share/report.md. Arguments go to ferry-share (`--help`).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked -p ferry
cargo build --release --locked -p ferry-bench --bin ferry-share
exec target/release/ferry-share --ferry target/release/ferry "$@"
