//! Writes the synthetic F32 models whose llama-quantize mixes `scripts/record_peer_mixes.py`
//! records: `cargo run -p perch-convert --example mix_models -- DIR` (prints the paths).

#[path = "../tests/common/mix_models.rs"]
mod mix_models;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: mix_models DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("the folder can be created");
    for m in mix_models::mix_models() {
        println!("{}", mix_models::write(&m, &dir).display());
    }
}
