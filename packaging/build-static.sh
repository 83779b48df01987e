#!/usr/bin/env bash
# Builds ferry as one static executable (musl libc), the binary of the
# container image (packaging/Dockerfile) and of hosts without a matching
# glibc. Prints the path of the binary on its last line.
#
# Needs: the Rust toolchain of rust-toolchain.toml (this script adds the musl
# target to it) and musl-gcc for the C parts of the dependencies (ring,
# SQLite): Debian's `musl-tools`.
#
# CARGO_TARGET_DIR is honoured; the default keeps the static build apart
# from the everyday one (target/static), since every crate is built again
# for the other target anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

target="$(uname -m)-unknown-linux-musl"
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v musl-gcc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # As the build scripts add the wasm32 target, a fresh Debian machine gets
  # what this build needs without a manual step.
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >&2
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "build-static.sh: musl-gcc not found: install Debian's musl-tools (apt-get install musl-tools)" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/static}"
# The release profile as it is (Cargo.toml): no DWARF, the symbol table kept
# so that a panic's backtrace names its functions.
# The C parts of the dependencies build with musl's compiler wrapper.
export "CC_${target//-/_}=musl-gcc"
# mimalloc, the static build's allocator (host/Cargo.toml), commits its
# arenas as it uses them: committing them at once, its default on Linux,
# more than doubled ferry's peak RSS against a stalled sink (`ferry-bench --teleport
# --backlog`) and bought no speed.
export "CFLAGS_${target//-/_}=-DMI_DEFAULT_ARENA_EAGER_COMMIT=0"
cargo build --release --locked --target "$target" -p ferry >&2
echo "$CARGO_TARGET_DIR/$target/release/ferry"
