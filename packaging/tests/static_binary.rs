//! The container image's binary: `build-static.sh` builds ferry as one
//! static executable that runs with nothing from the machine — no dynamic
//! loader, no shared libraries, an empty environment — and the Dockerfile
//! ships exactly that build.
//!
//! The build is a whole release build for the musl target (several minutes
//! on two cores); it runs in its own target folder, `target/static`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("packaging/ sits in the workspace").to_owned()
}

/// Builds the static binary with the script the Dockerfile runs.
fn build_static() -> PathBuf {
    let output = Command::new("bash")
        .arg(workspace().join("packaging/build-static.sh"))
        .env("CARGO_TARGET_DIR", workspace().join("target/static"))
        .output()
        .expect("run packaging/build-static.sh");
    assert!(output.status.success(), "build-static.sh failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("build-static.sh prints the binary's path").trim())
}

/// The ELF program header types of the executable at `path`: a dynamically
/// linked one has `PT_INTERP` (3, the loader) or `PT_DYNAMIC` with needed
/// libraries; a static one has no `PT_INTERP`.
fn program_header_types(path: &Path) -> Vec<u32> {
    let elf = std::fs::read(path).expect("read the binary");
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    assert_eq!(elf[4], 2, "a 64-bit ELF file");
    assert_eq!(elf[5], 1, "a little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes"));
    let (offset, entry_size, count) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38) as usize);
    (0..count).map(|i| u32_at(offset + i * entry_size)).collect()
}

const PT_INTERP: u32 = 3;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn the_static_binary_needs_nothing_from_the_machine_and_runs_the_demo() {
    let binary = build_static();
    let types = program_header_types(&binary);
    assert!(!types.is_empty(), "no program headers read from {}", binary.display());
    assert!(!types.contains(&PT_INTERP), "{} asks for a dynamic loader (PT_INTERP): not static", binary.display());

    let bytes = std::fs::read(&binary).expect("read the binary");
    let mib = bytes.len() as f64 / (1024.0 * 1024.0);
    // 40 MiB until the PostgreSQL client came in (SCRAM, the wire protocol:
    // 41.6 MiB); the bound catches a dependency that drags in much more.
    assert!(mib <= 44.0, "the shipped binary is {mib:.1} MiB, over the 44 MiB a user expects of it");
    assert!(contains(&bytes, b".symtab"), "the binary lost its symbol table: a panic's backtrace would name no function");
    assert!(!contains(&bytes, b"FERRY_TEST_"), "a test-only switch (feature `test-hooks`) is in the release binary");

    let version = Command::new(&binary).arg("version").env_clear().output().expect("run ferry version");
    assert!(version.status.success(), "ferry version failed: {}", String::from_utf8_lossy(&version.stderr));
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with(&format!("ferry {}", env!("CARGO_PKG_VERSION"))),
        "unexpected version line"
    );

    // The whole job, on an empty environment: gRPC and mutual TLS both ways,
    // the embedded WebAssembly plugin, SQLite.
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Command::new(&binary).args(["demo", "--dir"]).arg(dir.path()).env_clear().output().expect("run ferry demo");
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(demo.status.success(), "ferry demo failed ({}):\n{stdout}\n{}", demo.status, String::from_utf8_lossy(&demo.stderr));
    assert!(stdout.contains("the stand-in Logstash recorded"), "the demo did not report what Logstash got:\n{stdout}");
    assert!(dir.path().join("storage/ferry.db").exists(), "the demo kept no state database in {}", dir.path().display());
}

#[test]
fn the_dockerfile_ships_that_build_as_a_non_root_user_with_state_in_a_volume() {
    let dockerfile = std::fs::read_to_string(workspace().join("packaging/Dockerfile")).expect("read packaging/Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(stages.len() >= 2, "a multi-stage build: the toolchain stays out of the image");
    let (build, image) = (stages[stages.len() - 2], stages[stages.len() - 1]);
    assert!(build.contains("packaging/build-static.sh"), "the image's binary is not the one build-static.sh makes (and these tests run)");
    let user = image.lines().find_map(|line| line.strip_prefix("USER ")).expect("the image names its user");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|uid| uid.trim().parse().ok())
        .expect("USER as a numeric uid, so Kubernetes' runAsNonRoot can verify it");
    assert_ne!(uid, 0, "the image runs as root");
    assert!(image.contains("VOLUME [\"/var/lib/ferry\""), "the state folder is a volume");
    assert!(image.contains("ENTRYPOINT [\"/usr/local/bin/ferry\"]"), "ferry is the entry point");
    assert!(!image.contains("RUN "), "the last stage runs nothing: it has no shell");
}
