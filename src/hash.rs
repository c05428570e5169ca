//! Content hashes that become parts of names.
//!
//! ConfigMap suffixes follow kustomize's hasher (`api/hasher/hasher.go`): SHA-256 of Go's JSON
//! of `{"data":…,"kind":"ConfigMap","name":""}` (the name is always empty there), first ten hex
//! digits, with `0 1 3 a e` replaced by `g h k m t`. Job names use the same encoding of a
//! digest over everything that changes what the Job runs.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::gojson;

/// The ten-character suffix kustomize gives a ConfigMap with this `data` (no binaryData).
pub fn configmap_suffix(data: &BTreeMap<String, String>) -> String {
    let mut json = String::from("{\"data\":");
    json.push_str(&gojson::string_map(data));
    json.push_str(",\"kind\":\"ConfigMap\",\"name\":\"\"}");
    encode(&Sha256::digest(json.as_bytes()))
}

/// [`configmap_suffix`] of `{"code": code}`, the ConfigMap of a task's inline code, without
/// copying the code into a map first.
pub fn code_configmap_suffix(code: &str) -> String {
    let mut json = String::with_capacity(code.len() + 64);
    json.push_str("{\"data\":{\"code\":");
    gojson::write_str(&mut json, code);
    json.push_str("},\"kind\":\"ConfigMap\",\"name\":\"\"}");
    encode(&Sha256::digest(json.as_bytes()))
}

/// A ten-character name-safe digest of arbitrary bytes.
pub fn short(bytes: &[u8]) -> String {
    encode(&Sha256::digest(bytes))
}

fn encode(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]])
        .take(10)
        .map(|c| match c {
            b'0' => 'g',
            b'1' => 'h',
            b'3' => 'k',
            b'a' => 'm',
            b'e' => 't',
            c => c as char,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Vectors produced by real `kubectl kustomize` (kustomize-krm-validation.md §1.5); the
    // integration suite also compares against a live kubectl run.
    #[test]
    fn kustomize_vectors() {
        assert_eq!(
            configmap_suffix(&map(&[("FOO", "bar"), ("hello", "world")])),
            "k9h8bf29t7"
        );
        assert_eq!(
            configmap_suffix(&map(&[("GREETING", "hello")])),
            "f655md8fbd"
        );
        assert_eq!(configmap_suffix(&map(&[("port", "8080")])), "9hdd6gt8fb");
    }

    #[test]
    fn code_suffix_is_the_suffix_of_its_map() {
        for code in ["", "print(1)\n", "const a = \"<b>\" && c;\n\tx\u{2028}\n"] {
            assert_eq!(
                code_configmap_suffix(code),
                configmap_suffix(&map(&[("code", code)])),
                "{code:?}"
            );
        }
    }
}
