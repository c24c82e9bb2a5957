// Generates the client and server from the one schema in proto/vault/v1. Needs `protoc`
// (Debian: protobuf-compiler); integration-tests/install-deps installs it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let proto = format!("{proto_dir}/vault/v1/vault.proto");
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto.as_str()], &[proto_dir])?;
    Ok(())
}
