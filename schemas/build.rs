//! Generates the message and service code from `proto/` with the system `protoc`
//! (`PROTOC` overrides its path), and a descriptor set for gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/clipguard/v1/clip.proto",
        "proto/clipguard/v1/services.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("clipguard_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
