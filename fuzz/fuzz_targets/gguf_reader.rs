//! Fuzzes the GGUF reader: any input either fails with an error or yields a file whose every
//! accessor works, whose tensor views lie inside it, and which writes back to bytes that parse
//! to the same file again (a fixed point after one rewrite).
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch_gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, _) in file.metadata().iter() {
        // Any answer is fine; none may panic.
        let _ = file.get_str(key);
        let _ = file.get_u32(key);
        let _ = file.get_usize(key);
        let _ = file.get_f32(key);
        let _ = file.get_bool(key);
        let _ = file.get_str_array(key);
        let _ = file.get_f32_array(key);
        let _ = file.get_i32_array(key);
    }
    for view in file.tensor_views() {
        assert_eq!(view.data.len() as u64, view.info.n_bytes);
        assert!(file.data_offset() + view.info.offset + view.info.n_bytes <= file.len());
        assert!(file.tensor(view.name()).is_some());
    }
    let written = file
        .to_bytes()
        .expect("a file that was read can be written");
    let again = GgufFile::from_bytes(written.clone()).expect("what the writer wrote parses");
    assert_eq!(again.metadata().len(), file.metadata().len());
    assert_eq!(again.tensors().len(), file.tensors().len());
    for (a, b) in file.tensor_views().zip(again.tensor_views()) {
        assert_eq!(
            (a.name(), a.ty(), a.dims(), a.data),
            (b.name(), b.ty(), b.dims(), b.data)
        );
    }
    assert!(
        again.to_bytes().expect("rewrite") == written,
        "rewriting is a fixed point"
    );
});
