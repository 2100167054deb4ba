//! Links glibc: it provides `__libc_start_main` (called by the C start files that run our `main`) and the
//! `memcpy`/`memset`/`memcmp` symbols that `core` emits calls to. libc is not std.
//!
//! For the `edge-finetune` example it also turns host files into flat blobs the no_std binary embeds with
//! `include_bytes!`, as a firmware build would flash them: the bundled Fashion-MNIST subset (IDX, gzip)
//! as raw pixels and labels, and the published NiNo weights as little-endian f16 with a table of names,
//! shapes and offsets.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-link-arg-bins=-lc");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mini = root.join("fixtures/fashion-mnist-mini");
    for (name, magic) in [
        ("train-images-idx3-ubyte", 2051),
        ("train-labels-idx1-ubyte", 2049),
        ("t10k-images-idx3-ubyte", 2051),
        ("t10k-labels-idx1-ubyte", 2049),
    ] {
        let path = mini.join(format!("{name}.gz"));
        println!("cargo:rerun-if-changed={}", path.display());
        let body = idx_body(&path, magic);
        std::fs::write(out.join(format!("{name}.bin")), body).expect("write OUT_DIR blob");
    }
    let weights = root.join("fixtures/weights/nino_no_posw.safetensors");
    println!("cargo:rerun-if-changed={}", weights.display());
    write_f16_weights(&weights, &out);
}

/// The payload of an IDX file after its header (magic, then one big-endian u32 per dimension).
fn idx_body(path: &Path, magic: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    flate2::read::GzDecoder::new(file).read_to_end(&mut raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let word = |i: usize| u32::from_be_bytes(raw[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    assert_eq!(word(0), magic, "{}: not an IDX file of the expected kind", path.display());
    let dims = (magic & 0xff) as usize;
    let header = 4 * (1 + dims);
    let len: usize = (1..=dims).map(|i| word(i) as usize).product();
    assert_eq!(raw.len(), header + len, "{}: size does not match its header", path.display());
    raw.split_off(header)
}

/// Every tensor of the safetensors file as f16, in name order, plus `nino_weights_index.rs` describing them.
fn write_f16_weights(path: &Path, out: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut blob = Vec::new();
    let mut index =
        String::from("/// The f16 weight tensors in the blob: (state-dict key, shape, offset in values).\n");
    index.push_str("pub const TENSORS: &[(&str, &[usize], usize)] = &[\n");
    for name in &names {
        let t = st.tensor(name).expect("listed tensor");
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}: expected f32");
        let offset = blob.len() / 2;
        for v in t.data().chunks_exact(4) {
            let x = f32::from_le_bytes(v.try_into().expect("4 bytes"));
            blob.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
        }
        let _ = writeln!(index, "    ({name:?}, &{:?}, {offset}),", t.shape());
    }
    index.push_str("];\n");
    let _ = writeln!(index, "/// Values in the blob.\npub const VALUES: usize = {};", blob.len() / 2);
    std::fs::write(out.join("nino_weights.f16"), blob).expect("write OUT_DIR blob");
    std::fs::write(out.join("nino_weights_index.rs"), index).expect("write OUT_DIR index");
}
