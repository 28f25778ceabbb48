// Generates the plugwire.v1 and grpc.health.v1 code from the repo's .proto
// files with a vendored protoc (no system protoc needed).
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    // sdk/rust -> repo root -> proto/
    let proto = manifest.join("../../proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let files = [
        proto.join("plugwire/v1/types.proto"),
        proto.join("plugwire/v1/plugin.proto"),
        proto.join("plugwire/v1/host.proto"),
    ];
    // Health: with proto/grpc as the include path (as scripts/generate-polyglot.sh does),
    // so it is grpc.health.v1 in health/v1/health.proto.
    let health = proto.join("grpc/health/v1/health.proto");
    for f in files.iter().chain(std::iter::once(&health)) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&files, &[proto.clone()])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(false)
        .compile_protos(&[health], &[proto.join("grpc")])?;
    Ok(())
}
