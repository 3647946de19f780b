//! The request fingerprint: SHA-256 of the body's canonical JSON, so a
//! retry is recognised as "the same request" however the client happened to
//! order keys or space the document.
//!
//! Canonical form, as written by [`canonical_json`]:
//! - object keys sorted by their UTF-8 bytes, at every depth;
//! - no whitespace between tokens;
//! - strings escaped as `serde_json` escapes them;
//! - numbers as `serde_json` prints them (so `1` and `1.0` differ: they are
//!   different requests as far as this contract is concerned).
//!
//! This is close to, but not, RFC 8785 (JCS), which sorts by UTF-16 code
//! units and re-formats numbers; only this service ever compares the hashes,
//! so the simpler rule is enough. It is written out rather than relying on
//! `serde_json::Map` being a `BTreeMap`, because any crate in the build
//! enabling serde_json's `preserve_order` feature would silently change that.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The lowercase hex SHA-256 of `value`'s canonical JSON (64 characters).
pub fn fingerprint(value: &Value) -> String {
    format!("{:x}", Sha256::digest(canonical_json(value).as_bytes()))
}

/// `value` as canonical JSON (see the module docs).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal with `serde_json`'s escaping.
fn write_string(s: &str, out: &mut String) {
    // Serialising a &str cannot fail; the fallback only keeps this total.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let value = parse(r#" { "b" : 1 , "a" : [ true , null ] , "c" : "x y" } "#);
        assert_eq!(
            canonical_json(&value),
            r#"{"a":[true,null],"b":1,"c":"x y"}"#
        );
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let a = parse(r#"{"order_id":"o-1","amount_cents":500,"reason":"damaged"}"#);
        let b = parse(
            "{\n  \"reason\": \"damaged\",\n  \"amount_cents\": 500,\n  \"order_id\": \"o-1\"\n}",
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn nested_objects_are_sorted_at_every_depth() {
        let a = parse(r#"{"z":{"y":{"b":2,"a":1}},"list":[{"q":1,"p":2}]}"#);
        let b = parse(r#"{"list":[{"p":2,"q":1}],"z":{"y":{"a":1,"b":2}}}"#);
        assert_eq!(
            canonical_json(&a),
            r#"{"list":[{"p":2,"q":1}],"z":{"y":{"a":1,"b":2}}}"#
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn array_order_is_significant() {
        assert_ne!(fingerprint(&parse("[1,2]")), fingerprint(&parse("[2,1]")));
    }

    #[test]
    fn any_value_change_changes_the_fingerprint() {
        let base = fingerprint(&parse(r#"{"amount_cents":500}"#));
        assert_ne!(base, fingerprint(&parse(r#"{"amount_cents":501}"#)));
        assert_ne!(base, fingerprint(&parse(r#"{"amount_cents":"500"}"#)));
        assert_ne!(base, fingerprint(&parse(r#"{"amount_cents":500.0}"#)));
        assert_ne!(
            base,
            fingerprint(&parse(r#"{"amount_cents":500,"note":null}"#))
        );
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let value = parse(r#"{"k\"ey":"line\nbreak \u00e9 \u0001"}"#);
        assert_eq!(
            canonical_json(&value),
            "{\"k\\\"ey\":\"line\\nbreak é \\u0001\"}"
        );
    }

    #[test]
    fn fingerprint_is_lowercase_hex_sha256() {
        // sha256("{}")
        assert_eq!(
            fingerprint(&parse("{}")),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
