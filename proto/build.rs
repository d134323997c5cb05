//! Compiles `leadscore/v1/*.proto` with protox (pure Rust, so no `protoc` is needed) and writes
//! the descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("leadscore/v1");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());

    let descriptors = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("leadscore_descriptor.bin"), descriptors.encode_to_vec())?;
    // Maps (a lead's attributes, an event's properties) as sorted maps: a handful of entries
    // is built and read faster than a SipHash table, and they come out in name order.
    // The codec decodes each message from its contiguous bytes (src/codec.rs).
    let builder = tonic_prost_build::configure().btree_map(".").codec_path("crate::codec::SliceCodec");
    builder.build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
