//! Compiles `proto/calanque/v1/*.proto` into OUT_DIR (never committed). protoc comes from
//! `scripts/ensure-deps.sh` (Debian `protobuf-compiler`); `PROTOC` overrides the path.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "calanque/v1/directory.proto",
        "calanque/v1/bus.proto",
        "calanque/v1/edge.proto",
        "calanque/v1/media.proto",
        "calanque/v1/calls.proto",
        "calanque/v1/failover.proto",
    ]
    .map(|f| root.join(f));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut config = tonic_prost_build::Config::new();
    // `prost::Name` impls: the `calanque-type` header values come from the generated types.
    config.enable_type_names();
    tonic_prost_build::configure()
        // Transport-free stubs: the proto crate needs only tonic's codegen; services that serve
        // or dial choose their transport features themselves.
        .build_transport(false)
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
