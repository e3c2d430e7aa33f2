//! How deeply a JSON text nests arrays and objects, found by a scan of its bytes (no
//! parse, no recursion). Payloads are stored as the raw text they arrived as; this bounds
//! their nesting so that every transport can later decode them: the protocol's value
//! decoder, MessagePack and the Python layer all have recursion limits (128 and more).

use crate::error::{EngineError, Result};

/// The deepest nesting a stored payload (`data`, a result) may have: a scalar is 0,
/// `[]` is 1. It leaves room below the decoders' limit of 128 for the envelope a payload
/// is sent in (a reply, a job object, an event).
pub const MAX_JSON_DEPTH: usize = 100;

/// Refuses a payload (`field`: its name in the message) nested deeper than
/// `MAX_JSON_DEPTH`.
pub fn check(text: &str, field: &str) -> Result<()> {
    if deeper_than(text, MAX_JSON_DEPTH) {
        return Err(EngineError::invalid(format!(
            "{field} is nested more than {MAX_JSON_DEPTH} levels deep"
        )));
    }
    Ok(())
}

/// Whether `text` (valid JSON) nests arrays and objects more than `max` deep.
fn deeper_than(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Value;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn counts_arrays_and_objects_not_strings() {
        assert!(!deeper_than("1", 0));
        assert!(deeper_than("[]", 0));
        assert!(!deeper_than("[]", 1));
        assert!(!deeper_than(r#"{"a":[1,{"b":2}]}"#, 3));
        assert!(deeper_than(r#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!deeper_than(r#"["[[[[", "\"[[[", {"k\\":"]"}]"#, 2));
        assert!(!deeper_than(&nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH));
        assert!(deeper_than(&nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH));
    }

    #[test]
    fn check_names_the_field() {
        assert!(check(&nested(MAX_JSON_DEPTH), "data").is_ok());
        let e = check(&nested(MAX_JSON_DEPTH + 1), "result").unwrap_err();
        assert_eq!(e.message, "result is nested more than 100 levels deep");
    }

    #[test]
    fn the_deepest_payload_decodes_inside_an_envelope() {
        let reply = format!(
            r#"{{"ok":true,"job":{{"data":{}}}}}"#,
            nested(MAX_JSON_DEPTH)
        );
        assert!(Value::from_json(reply.as_bytes()).is_some());
    }
}
