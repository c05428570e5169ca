//! The YAML facade: the only module that names a YAML library.
//!
//! Input side: a stream is split into documents at `---` / `...` lines (YAML forbids those
//! markers inside any scalar, so a text split is exact) and each document is parsed with
//! granit-parser into our own [`Node`] tree. Every node carries its line and column, which is
//! what `path:line:col` diagnostics need, and plain scalars are typed the way Kubernetes'
//! YAML decoder (go-yaml v2 under sigs.k8s.io/yaml, YAML 1.1 rules) types them: `on` is a
//! bool, `0644` is 420. Keeping the raw text of each document lets untouched resources pass
//! through byte for byte.
//!
//! Output side: generated objects are `serde_json::Value`s emitted by serde-saphyr, which
//! quotes every string a YAML 1.1 reader could mistype.

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::Value;

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A parsed YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One mapping entry; keys are strings, as JSON and Kubernetes see them.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A YAML syntax error at a position inside one document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// One document of a stream, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The document text, including an explicit `---` line when it carries content.
    pub text: &'a str,
    /// The document body to re-emit verbatim (without a bare `---` marker line).
    pub body: &'a str,
    /// 1-based line in the file where `text` starts.
    pub first_line: u32,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// A short name for the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "boolean",
            NodeKind::Int(_) => "integer",
            NodeKind::Float(_) => "number",
            NodeKind::Str(_) => "string",
            NodeKind::Seq(_) => "array",
            NodeKind::Map(_) => "object",
        }
    }

    /// The node as JSON, the way the API server would receive it.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => {
                // Go's encoder writes integral floats without a fraction.
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    Value::from(*f as i64)
                } else {
                    serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
                }
            }
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Splits a stream into documents. JSON files are one document and are not split.
pub fn split_stream<'a>(text: &'a str) -> Vec<Chunk<'a>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut start = 0usize; // byte offset of the current chunk
    let mut start_line = 1u32;
    let mut body_start = 0usize;
    let mut offset = 0usize;
    let push = |chunks: &mut Vec<Chunk<'a>>, s: usize, b: usize, e: usize, l: u32| {
        if s < e || b < e {
            chunks.push(Chunk {
                text: &text[s..e],
                body: &text[b.max(s)..e],
                first_line: l,
            });
        }
    };
    for (line_no, line) in (1u32..).zip(text.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") {
            push(&mut chunks, start, body_start, offset, start_line);
            start = offset;
            start_line = line_no;
            // A bare marker (optionally with a comment) is not part of the body.
            let rest = bare[3..].trim();
            body_start = if rest.is_empty() || rest.starts_with('#') {
                offset + line.len()
            } else {
                offset
            };
        } else if is_marker(bare, "...") {
            push(&mut chunks, start, body_start, offset, start_line);
            start = offset + line.len();
            body_start = start;
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    push(&mut chunks, start, body_start, text.len(), start_line);
    chunks
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.starts_with(marker)
        && line[3..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\t')
}

/// Parses one document chunk. Returns `None` for an empty (or comment-only) document.
pub fn parse_document(chunk: &Chunk<'_>) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(chunk.text),
        line_offset: chunk.first_line - 1,
        anchors: Vec::new(),
        depth: 0,
    };
    builder.document()
}

const MAX_DEPTH: usize = 256;

struct Builder<'a> {
    parser: Parser<'a, granit_parser::StrInput<'a>>,
    line_offset: u32,
    anchors: Vec<(usize, Node)>,
    depth: usize,
}

impl<'a> Builder<'a> {
    fn pos(&self, span: &Span) -> Pos {
        Pos {
            line: span.start.line() as u32 + self.line_offset,
            col: span.start.col() as u32 + 1,
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                Err(YamlError {
                    pos: Pos {
                        line: m.line() as u32 + self.line_offset,
                        col: m.col() as u32 + 1,
                    },
                    message: e.info().to_string(),
                })
            }
            None => Err(YamlError {
                pos: Pos::default(),
                message: "unexpected end of YAML stream".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::DocumentStart(..) => {
                    if root.is_some() {
                        // A chunk holds one document by construction; a second one can only
                        // come from a directive-only remainder.
                        let pos = self.pos(&span);
                        return Err(YamlError {
                            pos,
                            message: "more than one document in one chunk".into(),
                        });
                    }
                }
                Event::StreamEnd => return Ok(root),
                #[allow(unreachable_patterns)]
                Event::Comment(..) => {}
                ev => {
                    let node = self.node(ev, span)?;
                    root = match node.kind {
                        NodeKind::Null => None,
                        _ => Some(node),
                    };
                }
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node, YamlError> {
        let pos = self.pos(&span);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| t.to_string());
                let kind = resolve_scalar(&value, style, tag.as_deref());
                let node = Node { kind, pos };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, _)| *a == id);
                match found {
                    Some((_, node)) => Ok(node.clone()),
                    None => Err(YamlError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    }),
                }
            }
            Event::SequenceStart(_, anchor, _) => {
                self.enter(pos)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    match ev {
                        Event::SequenceEnd => break,
                        #[allow(unreachable_patterns)]
                        Event::Comment(..) => {}
                        ev => items.push(self.node(ev, span)?),
                    }
                }
                self.depth -= 1;
                let node = Node {
                    kind: NodeKind::Seq({
                        // Every document's tree is kept until the end of a render.
                        items.shrink_to_fit();
                        items
                    }),
                    pos,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(_, anchor, _) => {
                self.enter(pos)?;
                let mut entries: Vec<Entry> = Vec::new();
                let mut merged: Vec<Entry> = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    // Only a plain `<<` is a merge key; a quoted "<<" is an ordinary key.
                    let plain_merge = matches!(
                        &ev,
                        Event::Scalar(v, ScalarStyle::Plain, _, None) if v == "<<"
                    );
                    let key = match ev {
                        Event::MappingEnd => break,
                        #[allow(unreachable_patterns)]
                        Event::Comment(..) => continue,
                        ev => self.node(ev, span)?,
                    };
                    let (ev, span) = self.next_value()?;
                    let value = self.node(ev, span)?;
                    let key_text = key_string(&key)?;
                    if plain_merge {
                        // YAML merge keys: explicit keys win, earlier merged maps win.
                        let sources: Vec<&Node> = match &value.kind {
                            NodeKind::Seq(items) => items.iter().collect(),
                            _ => vec![&value],
                        };
                        for src in sources {
                            let Some(src_entries) = src.as_map() else {
                                return Err(YamlError {
                                    pos: value.pos,
                                    message:
                                        "a merge key (<<) needs a mapping or a list of mappings"
                                            .into(),
                                });
                            };
                            for e in src_entries {
                                if !merged.iter().any(|m| m.key == e.key) {
                                    merged.push(e.clone());
                                }
                            }
                        }
                        continue;
                    }
                    if let Some(prev) = entries.iter().find(|e| e.key == key_text) {
                        return Err(YamlError {
                            pos: key.pos,
                            message: format!(
                                "duplicate key {key_text:?} (first at line {}); Kubernetes rejects duplicate fields",
                                prev.key_pos.line
                            ),
                        });
                    }
                    entries.push(Entry {
                        key: key_text,
                        key_pos: key.pos,
                        value,
                    });
                }
                for m in merged {
                    if !entries.iter().any(|e| e.key == m.key) {
                        entries.push(m);
                    }
                }
                self.depth -= 1;
                let node = Node {
                    kind: NodeKind::Map({
                        entries.shrink_to_fit();
                        entries
                    }),
                    pos,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            _ => Err(YamlError {
                pos,
                message: "unexpected YAML event".into(),
            }),
        }
    }

    fn next_value(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        loop {
            let (ev, span) = self.next()?;
            #[allow(unreachable_patterns)]
            match ev {
                Event::Comment(..) => continue,
                ev => return Ok((ev, span)),
            }
        }
    }

    fn enter(&mut self, pos: Pos) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(YamlError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }
}

fn key_string(key: &Node) -> Result<String, YamlError> {
    Ok(match &key.kind {
        NodeKind::Str(s) => s.clone(),
        NodeKind::Null => "null".into(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Seq(_) | NodeKind::Map(_) => {
            return Err(YamlError {
                pos: key.pos,
                message: "a mapping key must be a scalar".into(),
            });
        }
    })
}

/// Types a scalar as go-yaml v2 (the decoder behind sigs.k8s.io/yaml) does.
fn resolve_scalar(value: &str, style: ScalarStyle, tag: Option<&str>) -> NodeKind {
    if let Some(tag) = tag {
        let suffix = tag.rsplit([':', '!']).next().unwrap_or("");
        match suffix {
            "str" | "binary" => return NodeKind::Str(value.to_string()),
            "null" => return NodeKind::Null,
            "bool" | "int" | "float" => {
                let resolved = resolve_plain(value);
                if !matches!(resolved, NodeKind::Str(_)) {
                    return resolved;
                }
            }
            _ => {}
        }
    }
    if style != ScalarStyle::Plain {
        return NodeKind::Str(value.to_string());
    }
    resolve_plain(value)
}

fn resolve_plain(value: &str) -> NodeKind {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return NodeKind::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return NodeKind::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeKind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeKind::Float(f64::NAN),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return NodeKind::Str(value.to_string());
    }
    let cleaned = value.replace('_', "");
    if let Some(i) = parse_go_int(&cleaned) {
        return NodeKind::Int(i);
    }
    if is_yaml_float(&cleaned)
        && let Ok(f) = cleaned.parse::<f64>()
    {
        return NodeKind::Float(f);
    }
    NodeKind::Str(value.to_string())
}

/// `strconv.ParseInt(s, 0, 64)`: sign, then `0x`, `0o`, `0b` or a leading `0` for octal.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(rest) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, rest)
    } else if let Some(rest) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, rest)
    } else if let Some(rest) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(body, radix).ok()?;
    let v = if neg { -magnitude } else { magnitude };
    i64::try_from(v).ok()
}

fn is_yaml_float(s: &str) -> bool {
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Serializes one generated object as a YAML document body (no `---`).
///
/// A small emitter of our own, because generated objects are plain JSON values and speed
/// matters here. It is deliberately conservative: a string is written plain only when it is
/// made of a few safe characters and no YAML 1.1 reader could take it for anything but a
/// string; multi-line text becomes a literal block when that is exact; everything else is
/// double-quoted with escapes. Tests round-trip tricky values through the parser.
pub fn emit(value: &Value) -> String {
    let mut out = String::with_capacity(512);
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(&mut out, map, 0, false),
        other => {
            emit_inline(&mut out, other);
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push(' ');
    }
}

/// `first_inline`: the first key goes on the current line (after `- `).
fn emit_map(
    out: &mut String,
    map: &serde_json::Map<String, Value>,
    indent: usize,
    first_inline: bool,
) {
    for (i, (k, v)) in map.iter().enumerate() {
        if !(i == 0 && first_inline) {
            pad(out, indent);
        }
        emit_scalar_str(out, k);
        out.push(':');
        emit_after_key(out, v, indent);
    }
}

fn emit_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit_seq(out, a, indent);
        }
        Value::String(s) if block_chomping(s).is_some() => emit_block(out, s, indent + 2),
        other => {
            out.push(' ');
            emit_inline(out, other);
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map(out, m, indent + 2, true),
            Value::String(s) if block_chomping(s).is_some() => {
                out.pop(); // "- |" rather than "-  |"
                emit_block(out, s, indent + 2);
            }
            other => {
                emit_inline(out, other);
                out.push('\n');
            }
        }
    }
}

/// A value on one line: scalars, empty collections, nested lists in flow style.
fn emit_inline(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => emit_scalar_str(out, s),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        // Only reachable for lists nested directly in lists; JSON is valid flow YAML, and
        // its strings are re-quoted below to stay safe.
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_inline_flow(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_double_quoted(out, k);
                out.push_str(": ");
                emit_inline_flow(out, item);
            }
            out.push('}');
        }
    }
}

/// Inside flow collections every string is double-quoted (`,` `[` `]` are special there).
fn emit_inline_flow(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => emit_double_quoted(out, s),
        other => emit_inline(out, other),
    }
}

fn emit_scalar_str(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        emit_double_quoted(out, s);
    }
}

/// Conservative plain scalars: a letter or `/` first, then letters, digits and `._/:@+=-`,
/// not ending in `:`, and typed as a string by a YAML 1.1 reader.
fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'/')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._/:@+=-".contains(c))
        && !s.ends_with(':')
        && !s.contains("::")
        && matches!(resolve_plain(s), NodeKind::Str(_))
}

/// The chomping indicator when `s` can be an exact literal block, else `None`.
fn block_chomping(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with(' ') || s.starts_with('\n') {
        return None;
    }
    let printable = |c: char| {
        c == '\n'
            || c == '\t'
            || (' '..='~').contains(&c)
            || (c >= '\u{a0}'
                && !matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ))
    };
    if !s.chars().all(printable) {
        return None;
    }
    // Trailing white space on a line would be kept, but editors and hooks strip it; a quoted
    // string cannot be changed that way.
    if s.split('\n')
        .any(|line| line.ends_with(' ') || line.ends_with('\t'))
    {
        return None;
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    Some(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    })
}

fn emit_block(out: &mut String, s: &str, indent: usize) {
    out.push(' ');
    out.push_str(block_chomping(s).expect("checked by the caller"));
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn emit_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Node {
        let chunks = split_stream(src);
        parse_document(&chunks[0]).unwrap().unwrap()
    }

    #[test]
    fn kubernetes_scalar_typing() {
        let n = parse(
            "a: on\nb: 0644\nc: '0644'\nd: 1_000\ne: 1.20\nf: y\ng: ~\nh: 0x1F\ni: 08\nj: abc\nk: \"on\"\n",
        );
        assert_eq!(n.get("a").unwrap().kind, NodeKind::Bool(true));
        assert_eq!(n.get("b").unwrap().kind, NodeKind::Int(420));
        assert_eq!(n.get("c").unwrap().kind, NodeKind::Str("0644".into()));
        assert_eq!(n.get("d").unwrap().kind, NodeKind::Int(1000));
        assert_eq!(n.get("e").unwrap().kind, NodeKind::Float(1.2));
        assert_eq!(n.get("f").unwrap().kind, NodeKind::Bool(true));
        assert_eq!(n.get("g").unwrap().kind, NodeKind::Null);
        assert_eq!(n.get("h").unwrap().kind, NodeKind::Int(31));
        assert_eq!(n.get("i").unwrap().kind, NodeKind::Float(8.0));
        assert_eq!(n.get("j").unwrap().kind, NodeKind::Str("abc".into()));
        assert_eq!(n.get("k").unwrap().kind, NodeKind::Str("on".into()));
    }

    #[test]
    fn positions_are_stream_global() {
        let src = "a: 1\n---\nkind: X\nspec:\n  name: foo\n";
        let chunks = split_stream(src);
        assert_eq!(chunks.len(), 2);
        let n = parse_document(&chunks[1]).unwrap().unwrap();
        let name = n.path(&["spec", "name"]).unwrap();
        assert_eq!(name.pos, Pos { line: 5, col: 9 });
        assert_eq!(chunks[1].body, "kind: X\nspec:\n  name: foo\n");
    }

    #[test]
    fn merge_keys_and_anchors() {
        let n = parse("base: &b {x: 1, z: 2}\nm:\n  <<: *b\n  z: 3\n");
        let m = n.get("m").unwrap();
        assert_eq!(m.get("x").unwrap().kind, NodeKind::Int(1));
        assert_eq!(m.get("z").unwrap().kind, NodeKind::Int(3));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let chunks = split_stream("a: 1\nb: 2\na: 3\n");
        let err = parse_document(&chunks[0]).unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key"));
    }

    #[test]
    fn empty_and_comment_documents_are_skipped() {
        let chunks = split_stream("---\n# only a comment\n---\n\n---\na: 1\n...\n");
        let parsed: Vec<_> = chunks.iter().map(|c| parse_document(c).unwrap()).collect();
        assert_eq!(parsed.iter().filter(|d| d.is_some()).count(), 1);
    }

    #[test]
    fn marker_inside_block_scalar_position_is_still_a_marker() {
        // `---` at column 0 always ends a document, even after a block scalar.
        let chunks = split_stream("a: |\n  x\n---\nb: 1\n");
        assert_eq!(chunks.len(), 2);
    }

    #[test]
    fn syntax_error_has_position() {
        let chunks = split_stream("a: 1\n---\nkind: [unclosed\n");
        let err = parse_document(&chunks[1]).unwrap_err();
        assert!(err.pos.line >= 3, "{err:?}");
    }

    /// parse(emit(v)) == v for values that trip YAML emitters.
    #[test]
    fn emit_round_trips_tricky_values() {
        let strings = [
            "",
            " ",
            "on",
            "Off",
            "y",
            "N",
            "yes",
            "null",
            "~",
            "true",
            "0644",
            "1.20",
            "1e3",
            "0x1F",
            "1_000",
            "2024-01-01",
            "12:30",
            "1:20:30",
            "-1",
            "+1",
            ".5",
            ".inf",
            "=",
            "<<",
            "a: b",
            "a #b",
            "a#b",
            "#x",
            "*x",
            "&x",
            "!x",
            "%x",
            "@x",
            "`x",
            "- x",
            "? x",
            "[x]",
            "{x}",
            "x,y",
            "'x'",
            "\"x\"",
            "x:",
            "x::y",
            "http://a/b",
            "ghcr.io/keptn/deno-runtime:v3.0.1",
            "keptnfn-x-k9h8bf29t7",
            "a\nb",
            "a\nb\n",
            "a\nb\n\n",
            "a\n\nb",
            " lead\nx",
            "trail \nx",
            "tab\tin",
            "x\r\ny",
            "bell\u{7}",
            "del\u{7f}",
            "nel\u{85}",
            "ls\u{2028}",
            "bom\u{feff}",
            "ünïcødé ✓",
            "<b>&</b>",
            "\\back",
            "--- x",
            "...",
            "---",
            "\n",
            "x\n   indented\n",
            "{\"workloadName\":\"\",\"appName\":\"a\"}",
        ];
        let mut obj = serde_json::Map::new();
        for (i, s) in strings.iter().enumerate() {
            obj.insert(format!("k{i}"), Value::String(s.to_string()));
            obj.insert(s.to_string(), Value::from(i as i64));
        }
        obj.insert(
            "list".into(),
            Value::Array(
                strings
                    .iter()
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
        );
        obj.insert(
            "nested".into(),
            serde_json::json!([[1, "on"], {"a": [], "b": {}}, null, true, 1.5]),
        );
        let value = Value::Object(obj);
        let text = emit(&value);
        let chunks = split_stream(&text);
        assert_eq!(chunks.len(), 1, "{text}");
        let back = parse_document(&chunks[0]).unwrap().unwrap().to_json();
        assert_eq!(back, value, "{text}");
    }

    #[test]
    fn emit_quotes_yaml11_ambiguous_strings() {
        let v = serde_json::json!({"a": "on", "b": "0644", "c": "multi\nline\n", "d": 1});
        let out = emit(&v);
        assert!(
            out.contains("a: \"on\"") || out.contains("a: 'on'"),
            "{out}"
        );
        assert!(
            out.contains("b: \"0644\"") || out.contains("b: '0644'"),
            "{out}"
        );
        assert!(out.contains("c: |"), "{out}");
    }
}
