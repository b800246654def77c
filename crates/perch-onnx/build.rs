//! Generates the ONNX protobuf types from the vendored `proto/onnx-ml.proto` with protox
//! (a protobuf compiler in Rust) and prost-build, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx-ml.proto");
    let fds = protox::compile(["onnx-ml.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
