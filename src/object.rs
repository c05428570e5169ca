//! Generated objects as light trees: keys are static or borrowed, strings borrowed from the
//! task run and its definition wherever they can be, and the tree is written straight to
//! YAML (for the output) and to Go JSON (for the content hash).
//!
//! Every Job was once built as a `serde_json::Value` twice (to hash it, then to write it):
//! an ordered hash map and an owned key per field made that a third of a render's time. The
//! writers here follow [`crate::yaml::emit`] and [`crate::gojson::value`] node for node, so
//! the bytes are the same as the `Value` path's. A container runner is borrowed from the
//! input's tree ([`Obj::from_node`]); the image pull Secrets and the rare float stay `Value`s
//! and go through those writers unchanged.

use std::borrow::Cow;

use serde_json::Value;

use crate::gojson;
use crate::yaml::{self, Node, NodeKind};

/// One node of a generated object.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Seq(Vec<Obj<'a>>),
    Map(Entries<'a>),
    /// A subtree taken from the input as JSON.
    Json(Value),
}

/// Map entries in insertion order (as YAML writes them; Go JSON sorts them).
pub type Entries<'a> = Vec<(Cow<'a, str>, Obj<'a>)>;

impl<'a> Obj<'a> {
    pub fn str(s: impl Into<Cow<'a, str>>) -> Self {
        Obj::Str(s.into())
    }

    /// A map of string values, in the map's order.
    pub fn string_map<K, V>(map: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'a, str>>,
        V: Into<Cow<'a, str>>,
    {
        Obj::Map(
            map.into_iter()
                .map(|(k, v)| (k.into(), Obj::Str(v.into())))
                .collect(),
        )
    }

    /// The object [`Node::to_json`] makes of `node`, its strings borrowed: a container
    /// runner made into a `Value` for each of its Jobs (twice) was a tenth of their cost.
    pub fn from_node(node: &'a Node<'_>) -> Self {
        match &node.kind {
            NodeKind::Null => Obj::Null,
            NodeKind::Bool(b) => Obj::Bool(*b),
            NodeKind::Int(i) => Obj::Int(*i),
            // `to_json` writes some floats as integers: take its number as it is.
            NodeKind::Float(_) => Obj::Json(node.to_json()),
            NodeKind::Str(s) => Obj::Str(Cow::Borrowed(s)),
            NodeKind::Seq(items) => Obj::Seq(items.iter().map(Obj::from_node).collect()),
            NodeKind::Map(entries) => Obj::Map(map_from_entries(entries)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Obj<'a>> {
        match self {
            Obj::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Obj<'a>> {
        match self {
            Obj::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The YAML document body (no `---`), as [`yaml::emit`] writes the same object.
    pub fn to_yaml(&self) -> String {
        // A Job's text is about 3 kB: sized once rather than grown (and copied) twice.
        let mut out = String::with_capacity(4096);
        match self {
            Obj::Map(entries) if !entries.is_empty() => emit_map(&mut out, entries, 0, false),
            Obj::Json(v) => return yaml::emit(v),
            other => {
                emit_inline(&mut out, other);
                out.push('\n');
            }
        }
        out
    }

    /// Go's `json.Marshal` of the object as a `map[string]interface{}`: keys sorted.
    pub fn to_go_json(&self) -> String {
        let mut out = String::with_capacity(4096);
        write_go_json(&mut out, self);
        out
    }
}

/// Parsed maps hold each key once, but the JSON map's rule (a later key replaces the value
/// in the first one's place) is kept anyway: by `insert` for small maps, and for large ones
/// when a key repeats (a scan per key would make them quadratic).
fn map_from_entries<'a>(entries: &'a [yaml::Entry<'_>]) -> Entries<'a> {
    let unique = || {
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        entries.iter().all(|e| seen.insert(&*e.key))
    };
    let by_insert = entries.len() <= 16 || !unique();
    let mut map = Vec::with_capacity(entries.len());
    for e in entries {
        let value = Obj::from_node(&e.value);
        if by_insert {
            insert(&mut map, &*e.key, value);
        } else {
            map.push((Cow::Borrowed(&*e.key), value));
        }
    }
    map
}

/// Sets `key`, keeping its place when it is already there (as an ordered JSON map does).
pub fn insert<'a>(entries: &mut Entries<'a>, key: impl Into<Cow<'a, str>>, value: Obj<'a>) {
    let key = key.into();
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some((_, slot)) => *slot = value,
        None => entries.push((key, value)),
    }
}

fn emit_map(out: &mut String, entries: &Entries<'_>, indent: usize, first_inline: bool) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if !(i == 0 && first_inline) {
            yaml::pad(out, indent);
        }
        yaml::emit_scalar_str(out, k);
        out.push(':');
        emit_after_key(out, v, indent);
    }
}

fn emit_after_key(out: &mut String, v: &Obj<'_>, indent: usize) {
    match v {
        Obj::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent + 2, false);
        }
        Obj::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                emit_seq_item(out, item, indent);
            }
        }
        Obj::Str(s) => yaml::emit_str_after_key(out, s, indent),
        Obj::Json(v) => yaml::emit_after_key(out, v, indent),
        other => {
            out.push(' ');
            emit_inline(out, other);
            out.push('\n');
        }
    }
}

fn emit_seq_item(out: &mut String, item: &Obj<'_>, indent: usize) {
    if let Obj::Json(v) = item {
        return yaml::emit_seq_item(out, v, indent);
    }
    yaml::pad(out, indent);
    out.push_str("- ");
    match item {
        Obj::Map(m) if !m.is_empty() => emit_map(out, m, indent + 2, true),
        Obj::Str(s) => yaml::emit_str_item(out, s, indent),
        other => {
            emit_inline(out, other);
            out.push('\n');
        }
    }
}

/// A value on one line: scalars, empty collections, nested lists in flow style.
fn emit_inline(out: &mut String, v: &Obj<'_>) {
    match v {
        Obj::Null => out.push_str("null"),
        Obj::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Obj::Int(i) => out.push_str(&i.to_string()),
        Obj::Str(s) => yaml::emit_scalar_str(out, s),
        Obj::Json(v) => yaml::emit_inline(out, v),
        Obj::Seq(a) if a.is_empty() => out.push_str("[]"),
        Obj::Map(m) if m.is_empty() => out.push_str("{}"),
        Obj::Seq(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_inline_flow(out, item);
            }
            out.push(']');
        }
        Obj::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml::emit_double_quoted(out, k);
                out.push_str(": ");
                emit_inline_flow(out, item);
            }
            out.push('}');
        }
    }
}

/// Inside flow collections every string is double-quoted.
fn emit_inline_flow(out: &mut String, v: &Obj<'_>) {
    match v {
        Obj::Str(s) => yaml::emit_double_quoted(out, s),
        Obj::Json(Value::String(s)) => yaml::emit_double_quoted(out, s),
        other => emit_inline(out, other),
    }
}

fn write_go_json(out: &mut String, v: &Obj<'_>) {
    match v {
        Obj::Null => out.push_str("null"),
        Obj::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Obj::Int(i) => out.push_str(&i.to_string()),
        Obj::Str(s) => gojson::write_str(out, s),
        Obj::Json(v) => gojson::write_value(out, v),
        Obj::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Obj::Map(entries) => write_go_json_map(out, entries),
    }
}

/// Go sorts a map's keys. Generated maps are small, so their order is sorted on the stack:
/// a vector per map cost more than sorting it.
fn write_go_json_map(out: &mut String, entries: &Entries<'_>) {
    const SMALL: usize = 16;
    let mut small = [0usize; SMALL];
    let mut large = Vec::new();
    let order: &mut [usize] = if entries.len() <= SMALL {
        &mut small[..entries.len()]
    } else {
        large.resize(entries.len(), 0);
        &mut large
    };
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i;
    }
    // Stable, as the sort of the entries themselves was (equal keys keep their order).
    order.sort_by(|&a, &b| entries[a].0.cmp(&entries[b].0));
    out.push('{');
    for (n, &i) in order.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let (k, item) = &entries[i];
        gojson::write_str(out, k);
        out.push(':');
        write_go_json(out, item);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same object as a `Value` (the writers' reference).
    fn to_value(o: &Obj<'_>) -> Value {
        match o {
            Obj::Null => Value::Null,
            Obj::Bool(b) => json!(b),
            Obj::Int(i) => json!(i),
            Obj::Str(s) => json!(s),
            Obj::Json(v) => v.clone(),
            Obj::Seq(items) => Value::Array(items.iter().map(to_value).collect()),
            Obj::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    m.insert(k.to_string(), to_value(v));
                }
                Value::Object(m)
            }
        }
    }

    fn sample() -> Obj<'static> {
        let user = json!({"name": "c", "args": [["a", 1], "x\ny\n"], "env": [], "r": {"x": 1.5}});
        Obj::Map(vec![
            ("z".into(), Obj::str("last: no")),
            ("a".into(), Obj::Int(-3)),
            ("b".into(), Obj::Bool(true)),
            ("n".into(), Obj::Null),
            ("code".into(), Obj::str("line 1\n  line 2\n")),
            ("empty".into(), Obj::Map(vec![])),
            ("none".into(), Obj::Seq(vec![])),
            (
                "list".into(),
                Obj::Seq(vec![
                    Obj::str("a<b>&"),
                    Obj::str("multi\nline"),
                    Obj::Seq(vec![Obj::str("in, flow"), Obj::Int(2)]),
                    Obj::Map(vec![
                        ("k".into(), Obj::str("v")),
                        ("u".into(), Obj::Json(user.clone())),
                    ]),
                    Obj::Json(user.clone()),
                    Obj::Json(json!("1.0")),
                ]),
            ),
            ("user".into(), Obj::Json(user)),
        ])
    }

    #[test]
    fn yaml_and_go_json_match_the_value_writers() {
        let o = sample();
        let v = to_value(&o);
        assert_eq!(o.to_yaml(), yaml::emit(&v));
        assert_eq!(o.to_go_json(), gojson::value(&v));
        for item in match &o {
            Obj::Map(e) => e.iter().map(|(_, v)| v).collect::<Vec<_>>(),
            _ => unreachable!(),
        } {
            assert_eq!(item.to_yaml(), yaml::emit(&to_value(item)), "{item:?}");
        }
    }

    #[test]
    fn objects_from_nodes_write_as_their_json() {
        let big: String = (0..20).map(|i| format!("k{i}: {i}\n")).collect();
        let docs = [
            "name: c\nimage: x:1\nargs: [a, 1, 2.5, 3.0, true, null, ~]\nenv: []\nm: {}\n",
            "a: {b: [[1, 'on'], {c: d}], e: 1e300, f: .nan, g: -0.0, h: 12345678901234567}\n",
            "code: |\n  line 1\n    line 2\nq: \"<&>\\u2028\"\nlist:\n- x\n- multi\n  line\n",
            "base: &b {k: 1, j: 2}\nm:\n  <<: *b\n  k: 3\n",
            &big,
            "- 1\n- two\n",
            "just a string",
        ];
        for text in docs {
            let chunk = &crate::yaml::split_stream(text)[0];
            let node = crate::yaml::parse_document(chunk).unwrap().unwrap();
            let ours = Obj::from_node(&node);
            let json = Obj::Json(node.to_json());
            assert_eq!(ours.to_yaml(), json.to_yaml(), "{text}");
            assert_eq!(ours.to_go_json(), json.to_go_json(), "{text}");
        }
        // Repeated keys, which the parser refuses, made by hand: small and large maps.
        for n in [3, 40] {
            let entry = |k: &str, v: i64| crate::yaml::Entry {
                key: k.to_string().into(),
                key_pos: Default::default(),
                value: Node {
                    kind: NodeKind::Int(v),
                    pos: Default::default(),
                },
            };
            let mut entries: Vec<_> = (0..n).map(|i| entry(&format!("k{i}"), i)).collect();
            entries.push(entry("k1", 99));
            entries.push(entry("k0", 98));
            let node = Node {
                kind: NodeKind::Map(entries),
                pos: Default::default(),
            };
            let json = Obj::Json(node.to_json());
            assert_eq!(Obj::from_node(&node).to_go_json(), json.to_go_json());
            assert_eq!(Obj::from_node(&node).to_yaml(), json.to_yaml());
        }
    }

    #[test]
    fn insert_keeps_the_first_place() {
        let mut e: Entries<'_> = vec![("a".into(), Obj::Int(1)), ("b".into(), Obj::Int(2))];
        insert(&mut e, "a", Obj::Int(3));
        insert(&mut e, "c", Obj::Int(4));
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(e[0].1, Obj::Int(3));
    }
}
