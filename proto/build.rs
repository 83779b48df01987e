//! Compiles ferry's copy of Teleport's gRPC protocol (`teleport/`, see
//! README.md) into Rust client and server code, with protox so that no
//! system `protoc` is needed.

use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| panic!("cargo sets CARGO_MANIFEST_DIR for build scripts")));
    let proto_dir = manifest_dir.join("teleport");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let files =
        ["teleport/auditlog/v1/auditlog.proto", "teleport/legacy/types/types.proto", "teleport/legacy/client/proto/authservice.proto"];
    let descriptors = protox::compile(files, [&manifest_dir])
        .unwrap_or_else(|err| panic!("the Teleport protocol in {} does not compile: {err}", proto_dir.display()));
    // One `.rs` file per protobuf package, into OUT_DIR.
    tonic_prost_build::configure()
        // Events' Structs stay bytes until they are written as JSON
        // (src/rawstruct.rs): no tree of maps and strings per event.
        .extern_path(".google.protobuf.Struct", "crate::rawstruct::RawStruct")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
        .unwrap_or_else(|err| panic!("cannot generate Rust code for the Teleport protocol: {err}"));
}
