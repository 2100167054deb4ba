//! `nino-core/capi/include/nino.h` against the Rust definitions of the C ABI (`nino-core/src/capi/`): the
//! header is hand-written, and this test is what keeps the two from drifting apart.
//!
//! Both sides are parsed from their source text: every `extern "C"` function (name, parameter names and
//! types, return type), every `NINO_*` constant (name and value) and every `#[repr(C)]` struct (fields and
//! their types). Rust types are mapped to C by the fixed table in [`c_type`]. Struct layouts are compared
//! twice: the C side's sizes, alignments and offsets, computed from the header with the C rules for this
//! target, against what the Rust compiler laid out (`size_of`, `align_of`, `offset_of!`). Any difference,
//! and any item present on one side only, fails.

use nino_core::capi::*;
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::mem::{align_of, offset_of, size_of};

const HEADER: &str = include_str!("../nino-core/capi/include/nino.h");

/// Every source file of the ABI module (read from the directory, so that a new file is never missed).
fn rust_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nino-core/src/capi");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("nino-core/src/capi")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.iter().any(|(f, _)| f == "mod.rs"), "found the module's files in {}", dir.display());
    files
}

/// A declaration with its type in C spelling, normalised (`const char*`, `nino_nowcaster**`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decl {
    name: String,
    ty: String,
    /// Array length as written (a literal or a constant's name).
    array: Option<String>,
}

#[derive(Debug, Default)]
struct Api {
    consts: BTreeMap<String, i128>,
    /// Struct name to fields; `None` for an opaque struct.
    structs: BTreeMap<String, Option<Vec<Decl>>>,
    /// Function name to (return type, parameters).
    fns: BTreeMap<String, (String, Vec<Decl>)>,
}

/// Collapses white space and glues `*` to the type: `const  char *` becomes `const char*`.
fn norm(ty: &str) -> String {
    let spaced = ty.replace('*', " * ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut out = String::new();
    for w in words {
        if w == "*" {
            out.push('*');
        } else {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

/// `const char *name` or `uint64_t opaque[N]` into a declaration.
fn c_decl(text: &str) -> Decl {
    let text = text.trim();
    let (text, array) = match text.find('[') {
        Some(i) => (&text[..i], Some(text[i + 1..text.rfind(']').expect("closing ]")].trim().to_string())),
        None => (text, None),
    };
    let text = text.trim_end();
    let split = text.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).expect("a type before the name");
    Decl { name: text[split + 1..].to_string(), ty: norm(&text[..=split]), array }
}

/// Integer literal of a `#define` or a Rust `const`: `(-9)`, `4294967295u`, `4_294_967_295`.
fn int(text: &str) -> Option<i128> {
    let t = text.trim().trim_start_matches('(').trim_end_matches(')').trim();
    let t = t.trim_end_matches(['u', 'U', 'l', 'L']).replace('_', "");
    t.parse().ok()
}

/// Splits `s` at `sep` outside brackets.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn parse_header(h: &str) -> Api {
    let mut api = Api::default();
    // Comments out; the C++ guard out; `#define`s collected, other preprocessor lines dropped.
    let mut text = String::new();
    let mut rest = h;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find("*/").expect("closed comment") + 2..];
    }
    text.push_str(rest);
    let mut body = String::new();
    let mut in_cpp_guard = false;
    for line in text.lines() {
        let l = line.trim();
        if l == "#ifdef __cplusplus" {
            in_cpp_guard = true;
        } else if in_cpp_guard {
            in_cpp_guard = l != "#endif";
        } else if let Some(def) = l.strip_prefix("#define ") {
            let mut parts = def.splitn(2, char::is_whitespace);
            let name = parts.next().unwrap();
            if let Some(v) = parts.next() {
                let v = int(v).unwrap_or_else(|| panic!("#define {name}: not an integer"));
                assert!(api.consts.insert(name.to_string(), v).is_none(), "#define {name} twice");
            }
        } else if !l.starts_with('#') {
            body.push_str(line);
            body.push('\n');
        }
    }
    for stmt in split_top(&body, ';') {
        let stmt = norm(stmt);
        if let Some(s) = stmt.strip_prefix("typedef struct ") {
            let name = s.split([' ', '{']).next().unwrap().to_string();
            let fields = s.find('{').map(|open| {
                let inner = &s[open + 1..s.rfind('}').expect("closing }")];
                split_top(inner, ';').into_iter().map(c_decl).collect::<Vec<_>>()
            });
            assert!(s.ends_with(&format!(" {name}")), "typedef struct {name} must be named {name}");
            assert!(api.structs.insert(name.clone(), fields).is_none(), "struct {name} twice");
        } else {
            let open = stmt.find('(').unwrap_or_else(|| panic!("not a declaration: {stmt}"));
            let head = c_decl(&stmt[..open]);
            let inner = &stmt[open + 1..stmt.rfind(')').expect("closing )")];
            let params = if inner.trim() == "void" {
                Vec::new()
            } else {
                split_top(inner, ',').into_iter().map(c_decl).collect()
            };
            assert!(api.fns.insert(head.name, (head.ty, params)).is_none(), "function twice");
        }
    }
    api
}

/// `NinoNowcaster` to `nino_nowcaster`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The C spelling of a Rust type of the ABI; panics on any type without one, so a new one must be added
/// here deliberately.
fn c_type(rust: &str) -> String {
    let r = rust.trim();
    if let Some(inner) = r.strip_prefix("*const ") {
        let inner = c_type(inner);
        return if inner.ends_with('*') { format!("{inner} const*") } else { format!("const {inner}*") };
    }
    if let Some(inner) = r.strip_prefix("*mut ") {
        return format!("{}*", c_type(inner));
    }
    match r {
        "i32" => "int32_t".into(),
        "u32" => "uint32_t".into(),
        "u64" => "uint64_t".into(),
        "u8" => "uint8_t".into(),
        "usize" => "size_t".into(),
        "f32" => "float".into(),
        "c_char" => "char".into(),
        "c_void" => "void".into(),
        _ if r.starts_with("Nino") && r.chars().all(|c| c.is_ascii_alphanumeric()) => snake(r),
        _ => panic!("no C spelling for the Rust type `{r}`: add it to c_type"),
    }
}

fn parse_rust() -> Api {
    let mut api = Api::default();
    let mut no_mangle = 0;
    let mut extern_fns = 0;
    for (file, src) in rust_sources() {
        let code: String = src.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
        no_mangle += code.matches("#[unsafe(no_mangle)]").count();
        for (i, _) in code.match_indices("pub const NINO_") {
            let decl = &code[i + "pub const ".len()..];
            let decl = &decl[..decl.find(';').unwrap()];
            let (name, value) = decl.split_once(':').unwrap();
            let value = value.split_once('=').unwrap().1;
            let v = int(value).unwrap_or_else(|| panic!("{file}: const {name} is not a literal"));
            assert!(api.consts.insert(name.trim().to_string(), v).is_none(), "const {name} twice");
        }
        for (i, _) in code.match_indices("pub struct Nino") {
            let s = &code[i + "pub struct ".len()..];
            let name = snake(s.split([' ', '{']).next().unwrap());
            assert!(
                code[..i].trim_end().rsplit("\n").take(4).any(|l| l.contains("#[repr(C")),
                "{file}: {name} is not #[repr(C)]"
            );
            let body = &s[s.find('{').unwrap() + 1..s.find("\n}").unwrap()];
            let fields: Vec<Decl> = split_top(body, ',')
                .into_iter()
                .map(|f| {
                    let f = f.trim().trim_start_matches("pub ").trim();
                    let (n, t) = f.split_once(':').unwrap();
                    let t = t.trim();
                    match t.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
                        Some(arr) => {
                            let (elem, len) = arr.split_once(';').unwrap();
                            Decl { name: n.trim().into(), ty: c_type(elem), array: Some(len.trim().into()) }
                        }
                        None => Decl { name: n.trim().into(), ty: c_type(t), array: None },
                    }
                })
                .collect();
            let opaque = fields.len() == 1 && fields[0].name == "_opaque" && fields[0].array.as_deref() == Some("0");
            api.structs.insert(name, if opaque { None } else { Some(fields) });
        }
        for (i, _) in code.match_indices("extern \"C\" fn ") {
            extern_fns += 1;
            let s = &code[i + "extern \"C\" fn ".len()..];
            let name = s[..s.find('(').unwrap()].trim().to_string();
            let close = s.find(')').unwrap_or_else(|| panic!("{file}: {name}: no )"));
            let inner = &s[s.find('(').unwrap() + 1..close];
            let params = split_top(inner, ',')
                .into_iter()
                .map(|p| {
                    let (n, t) = p.split_once(':').unwrap();
                    Decl { name: n.trim().into(), ty: norm(&c_type(t)), array: None }
                })
                .collect();
            let after = &s[close + 1..s.find('{').unwrap()];
            let ret = after.trim().strip_prefix("->").map_or("void".to_string(), |r| norm(&c_type(r)));
            assert!(api.fns.insert(name, (ret, params)).is_none(), "fn twice");
        }
    }
    assert_eq!(no_mangle, extern_fns, "every extern \"C\" fn of the ABI is #[unsafe(no_mangle)] and no other item is");
    api
}

#[test]
fn functions_match() {
    let (h, r) = (parse_header(HEADER), parse_rust());
    let names = |a: &Api| a.fns.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&h), names(&r), "functions in nino.h (left) and in nino-core/src/capi (right)");
    for (name, (ret, params)) in &r.fns {
        let (h_ret, h_params) = &h.fns[name];
        assert_eq!(h_ret, ret, "{name}: return type in nino.h (left) and Rust (right)");
        assert_eq!(h_params, params, "{name}: parameters in nino.h (left) and Rust (right)");
    }
}

#[test]
fn constants_match() {
    let (mut h, r) = (parse_header(HEADER), parse_rust());
    h.consts.remove("NINO_H");
    assert_eq!(h.consts, r.consts, "constants in nino.h (left) and in nino-core/src/capi (right)");
    // The compiled error table names every code the header defines, and names nothing else.
    for (name, value) in h.consts.iter().filter(|(n, _)| *n == "NINO_OK" || n.starts_with("NINO_E_")) {
        // SAFETY: `nino_error_name` returns a static NUL-terminated string.
        let got = unsafe { CStr::from_ptr(nino_error_name(*value as i32)) };
        assert_eq!(got.to_str().unwrap(), name);
        // SAFETY: as above.
        assert!(!unsafe { CStr::from_ptr(nino_error_message(*value as i32)) }.is_empty());
    }
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(nino_error_name(-1000)) }.to_str(), Ok("NINO_E_UNKNOWN"));
    assert_eq!(nino_abi_version() as i128, h.consts["NINO_ABI_VERSION"]);
}

/// Size and alignment of a C type of the header on this target.
fn c_size_align(ty: &str) -> (usize, usize) {
    if ty.ends_with('*') {
        return (size_of::<*const u8>(), align_of::<*const u8>());
    }
    match ty {
        "int32_t" | "uint32_t" | "float" => (4, 4),
        "uint64_t" => (8, align_of::<u64>()),
        "size_t" => (size_of::<usize>(), align_of::<usize>()),
        "uint8_t" | "char" => (1, 1),
        _ => panic!("no size for the C type `{ty}`"),
    }
}

/// A struct's size, alignment and each field's offset.
type StructLayout = (usize, usize, Vec<(String, usize)>);

/// The C layout of a struct of the header.
fn c_layout(fields: &[Decl], consts: &BTreeMap<String, i128>) -> StructLayout {
    let (mut at, mut align, mut offsets) = (0usize, 1usize, Vec::new());
    for f in fields {
        let (size, a) = c_size_align(&f.ty);
        let count =
            f.array.as_ref().map_or(1, |n| int(n).or_else(|| consts.get(n).copied()).expect("array length") as usize);
        at = at.next_multiple_of(a);
        offsets.push((f.name.clone(), at));
        at += size * count;
        align = align.max(a);
    }
    (at.next_multiple_of(align), align, offsets)
}

/// Size, alignment and field offsets the Rust compiler gave a struct, with its field names.
macro_rules! rust_layout {
    ($t:ty { $($f:ident),* $(,)? }) => {
        (size_of::<$t>(), align_of::<$t>(), vec![$((stringify!($f).to_string(), offset_of!($t, $f))),*])
    };
}

#[test]
fn struct_layouts_match() {
    let (h, r) = (parse_header(HEADER), parse_rust());
    let names = |a: &Api| a.structs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&h), names(&r), "structs in nino.h (left) and in nino-core/src/capi (right)");
    let compiled: BTreeMap<&str, StructLayout> = BTreeMap::from([
        (
            "nino_model",
            rust_layout!(NinoModel {
                arch,
                channels,
                height,
                width,
                classes,
                weights,
                weights_len,
                model_args,
                storage
            }),
        ),
        (
            "nino_plan",
            rust_layout!(NinoPlan {
                params,
                ctx,
                seq_len,
                nodes,
                node_feature_width,
                state_bytes,
                weight_bytes,
                history_bytes,
                node_feature_bytes,
                scratch_bytes,
                rollback_bytes,
                total_bytes,
                align
            }),
        ),
        ("nino_period", rust_layout!(NinoPeriod { kind, first, growth, cap, max })),
        ("nino_schedule", rust_layout!(NinoSchedule { opaque })),
        ("nino_action", rust_layout!(NinoAction { kind, index, k })),
        ("nino_rule", rust_layout!(NinoRule { max_ratio, max_increase })),
        ("nino_adam", rust_layout!(NinoAdam { lr, beta1, beta2, eps, weight_decay })),
    ]);
    for (name, fields) in &r.structs {
        let h_fields = h.structs[name].as_ref();
        let Some(fields) = fields else {
            assert!(h_fields.is_none(), "{name} is opaque in Rust but defined in nino.h");
            continue;
        };
        let h_fields = h_fields.unwrap_or_else(|| panic!("{name} is opaque in nino.h but defined in Rust"));
        assert_eq!(h_fields, fields, "{name}: fields in nino.h (left) and Rust (right)");
        let (size, align, offsets) =
            compiled.get(name.as_str()).unwrap_or_else(|| panic!("{name}: add it to `compiled`"));
        let listed: Vec<&String> = offsets.iter().map(|(f, _)| f).collect();
        let declared: Vec<&String> = fields.iter().map(|f| &f.name).collect();
        assert_eq!(listed, declared, "{name}: `compiled` lists every field of the Rust struct, in order");
        let (c_size, c_align, c_offsets) = c_layout(h_fields, &h.consts);
        assert_eq!((c_size, c_align), (*size, *align), "{name}: size and alignment in C (left) and Rust (right)");
        assert_eq!(&c_offsets, offsets, "{name}: field offsets in C (left) and Rust (right)");
    }
    assert_eq!(compiled.len(), r.structs.values().filter(|f| f.is_some()).count(), "no stale entry in `compiled`");
}
