#!/bin/sh
# The failover run (not in CI; about 4 minutes): two ferry instances sharing
# their state in a throwaway PostgreSQL (Debian's server, as ./test installs
# it), the active one killed with SIGKILL every 5-15 s while a Teleport
# stand-in's audit log grows. See bench/src/failover.rs; the report lands in
# target/failover/report.md. Arguments go to ferry-failover (`--help`).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked -p ferry
cargo build --release --locked -p ferry-bench --bin ferry-failover
exec target/release/ferry-failover --ferry target/release/ferry "$@"
