//! Layer 1, files: every byte the host reads or writes, and nothing above it.
//!
//! Crash-safe writes ([`atomic`]), IDX and CIFAR datasets and their splits ([`data`], with the CIFAR binary
//! format in [`cifar`]), safetensors tensors
//! ([`tensor_file`], the one place that turns tensors into bytes), NiNo weights ([`weights`]) and model
//! files ([`model_file`]), the trajectory collection format ([`collection`]) and PNG line plots ([`plot`]).
//! Uses no other layer of the crate.

pub mod atomic;
pub mod cifar;
pub mod collection;
pub mod data;
pub mod model_file;
pub mod plot;
pub mod tensor_file;
pub mod weights;

/// `msg` as one line: control characters (a newline inside a file-borne string that a parser's error
/// quotes back) become escapes, so an error about outside bytes prints as the one line users expect.
pub fn one_line(msg: impl std::fmt::Display) -> String {
    let s = msg.to_string();
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(super::one_line("unknown variant `f\n1\r6\t` é"), "unknown variant `f\\n1\\r6\\t` é");
        assert_eq!(super::one_line("plain `text`"), "plain `text`");
    }
}
