//! JSON bytes exactly as Go's `encoding/json.Marshal` writes them.
//!
//! Keptn puts `DATA` and `KEPTN_CONTEXT` into Job env values with Go's encoder, and
//! kustomize hashes ConfigMaps over Go's encoding; both differ from serde_json in the HTML
//! escapes (`<`, `>`, `&`), U+2028/U+2029 and invalid UTF-8. Reproducing them byte for byte is
//! what makes our Jobs identical to Keptn's and our suffixes identical to kustomize's.

use std::collections::BTreeMap;

/// Appends `s` as a Go-encoded JSON string (HTML-safe escaping, as `json.Marshal` does).
/// Runs of characters that need no escape are copied whole: this writes every Job's hash
/// input, DATA and KEPTN_CONTEXT.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        // One table look-up per byte that needs nothing (nearly all of them).
        match bytes[i..].iter().position(|&b| MAYBE_ESCAPE[b as usize]) {
            Some(skip) => i += skip,
            None => break,
        }
        let b = bytes[i];
        // U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
        let width = if needs_escape(b) {
            1
        } else if b == 0xE2
            && bytes.get(i + 1) == Some(&0x80)
            && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9))
        {
            3
        } else {
            i += 1;
            continue;
        };
        out.push_str(&s[run..i]);
        write_escaped(out, s[i..].chars().next().expect("i is a char boundary"));
        i += width;
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

const fn needs_escape(b: u8) -> bool {
    b < 0x20 || matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
}

/// The bytes that are escaped or may start U+2028/U+2029.
const MAYBE_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = needs_escape(b as u8) || b == 0xE2;
        b += 1;
    }
    t
};

fn write_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        // Go >= 1.22 writes \b and \f in short form.
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        c => out.push_str(&format!("\\u{:04x}", c as u32)),
    }
}

/// A Go `map[string]string` marshalled: keys sorted bytewise.
pub fn string_map<K: AsRef<str>, V: AsRef<str>>(map: &BTreeMap<K, V>) -> String {
    // Sized for the text without escapes: grown by doubling, it was copied a few times.
    let size = map
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 6);
    let mut out = String::with_capacity(size.sum::<usize>() + 2);
    out.push('{');
    write_map_body(&mut out, map);
    out.push('}');
    out
}

fn write_map_body<K: AsRef<str>, V: AsRef<str>>(out: &mut String, map: &BTreeMap<K, V>) {
    write_pairs(out, map.iter());
}

fn write_pairs<K: AsRef<str>, V: AsRef<str>>(
    out: &mut String,
    pairs: impl Iterator<Item = (K, V)>,
) {
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k.as_ref());
        out.push(':');
        write_str(out, v.as_ref());
    }
}

/// A struct of string fields in declaration order, with an optional trailing
/// `map[string]string` field that Go omits when empty (`omitempty`).
pub fn struct_with_map(
    fields: &[(&str, &str)],
    map_field: (&str, &BTreeMap<String, String>),
) -> String {
    struct_with_pairs(fields, (map_field.0, map_field.1.iter()))
}

/// [`struct_with_map`] with the map given as pairs in key order.
pub fn struct_with_pairs<K: AsRef<str>, V: AsRef<str>>(
    fields: &[(&str, &str)],
    map_field: (&str, impl Iterator<Item = (K, V)>),
) -> String {
    let mut pairs = map_field.1.peekable();
    let size: usize = fields.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    let mut out = String::with_capacity(size + 128);
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, k);
        out.push(':');
        write_str(&mut out, v);
    }
    if pairs.peek().is_some() {
        if !fields.is_empty() {
            out.push(',');
        }
        write_str(&mut out, map_field.0);
        out.push_str(":{");
        write_pairs(&mut out, pairs);
        out.push('}');
    }
    out.push('}');
    out
}

/// Any JSON value with object keys sorted, as Go marshals a `map[string]interface{}`.
pub fn value(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

pub(crate) fn write_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => write_float(out, f),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, &map[k]);
            }
            out.push('}');
        }
    }
}

/// A float as Go's `encoding/json` writes it: the shortest digits that read back, plain
/// notation for 1e-6 <= |f| < 1e21, else exponent notation with at least one exponent digit
/// (`1e+21`, `1e-7`). serde_json switches to exponents much earlier (`1e+20`), and the text
/// feeds Job names, so it must be Go's.
fn write_float(out: &mut String, f: f64) {
    let abs = f.abs();
    // Rust's `{:e}` gives the shortest round-tripping digits: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", abs);
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let exp: i32 = exp.parse().expect("the exponent is an integer");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if f.is_sign_negative() {
        out.push('-');
    }
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        write_plain(out, &digits, exp);
    } else {
        out.push_str(mantissa);
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&exp.unsigned_abs().to_string());
    }
}

/// `digits` (d1 d2 ...) times 10^(exp - len + 1) in plain notation.
fn write_plain(out: &mut String, digits: &str, exp: i32) {
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping as first written (char by char), which the run-copying writer must match.
    fn write_str_by_char(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => write_escaped(out, c),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    #[test]
    fn strings_escape_as_char_by_char() {
        let cases = [
            "",
            "plain",
            "a\"b\\c",
            "<script>&</script>",
            "line\nbreak\r\t",
            "\u{8}\u{c}\u{1}\u{1f}",
            "\u{2028}x\u{2029}",
            "\u{2027}\u{202a}\u{e2}",
            "é€😀 mixed <&> \u{7f}",
            "ends with <",
        ];
        for s in cases {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_str(&mut fast, s);
            write_str_by_char(&mut slow, s);
            assert_eq!(fast, slow, "{s:?}");
        }
        assert_eq!(
            string_map(&[("k<", "\u{2028}")].into_iter().collect()),
            r#"{"k\u003c":"\u2028"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn strings_escape_as_char_by_char_on_any_text(s in "(?s)[a-z \"\\\\<>&\u{0}-\u{1f}\u{7f}\u{e2}\u{2027}-\u{202a}é😀]{0,16}") {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_str(&mut fast, &s);
            write_str_by_char(&mut slow, &s);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    /// Expected texts printed by Go 1.26's `json.Marshal(float64)`.
    #[test]
    fn floats_as_go_writes_them() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (1e15, "1000000000000000"),
            (1e16, "10000000000000000"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1.2345e-10, "1.2345e-10"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-2.5e-8, "-2.5e-8"),
            (12345678901234567890.0, "12345678901234567000"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (f, go) in cases {
            let v = serde_json::Value::from(*f);
            assert_eq!(value(&v), *go, "{f:e}");
        }
    }

    #[test]
    fn html_escapes_and_controls() {
        let mut s = String::new();
        write_str(&mut s, "<a href=\"x\">&</a>\u{8}\u{c}\u{1}\u{2028}ü\t");
        assert_eq!(
            s,
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e\b\f\u0001\u2028ü\t""#
        );
    }

    #[test]
    fn map_keys_sorted_bytewise() {
        let m: BTreeMap<String, String> = [("user", "myuser"), ("data", "mydata"), ("Z", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            string_map(&m),
            r#"{"Z":"1","data":"mydata","user":"myuser"}"#
        );
    }
}
