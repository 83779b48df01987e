//! The `ferry` binary: the command line of `ferry::cli`, where each command
//! lives.

/// See `host/Cargo.toml`: the static (musl) build's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::cli::main(std::env::args_os())
}
