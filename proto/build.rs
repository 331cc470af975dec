//! Generates the gateway.v1 API with a vendored `protoc`, so a fresh machine needs nothing installed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through this variable; build scripts are single-threaded.
    std::env::set_var("PROTOC", protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "gateway/v1/common.proto",
        "gateway/v1/tenants.proto",
        "gateway/v1/listeners.proto",
        "gateway/v1/clusters.proto",
        "gateway/v1/routes.proto",
        "gateway/v1/endpoints.proto",
        "gateway/v1/config.proto",
        "gateway/v1/fleet.proto",
        "gateway/v1/monitoring.proto",
        "gateway/v1/tokens.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("gateway_v1_descriptor.bin"))
        .compile_protos(&files, &["."])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
