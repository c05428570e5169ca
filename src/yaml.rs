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

use std::borrow::Cow;
use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::Value;

use crate::limits::{DEPTH_CEILING, Limit, Limits};

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A parsed YAML node with its position. Strings borrow from the document text wherever
/// the parser could (plain and quoted scalars without escapes or folding): every tree of the
/// input is alive at once, and one allocation per scalar was most of their weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Node<'a> {
    pub kind: NodeKind<'a>,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    Map(Vec<Entry<'a>>),
}

/// One mapping entry; keys are strings, as JSON and Kubernetes see them.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub key_pos: Pos,
    pub value: Node<'a>,
}

/// A YAML syntax error, or a limit the document exceeded, at a position inside one document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    /// Set when the document is well-formed but too costly to read.
    pub limit: Option<Limit>,
}

impl YamlError {
    fn syntax(pos: Pos, message: String) -> Self {
        YamlError {
            pos,
            message,
            limit: None,
        }
    }

    pub fn limit(pos: Pos, limit: Limit, message: String) -> Self {
        YamlError {
            pos,
            message,
            limit: Some(limit),
        }
    }
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

impl<'a> Node<'a> {
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    pub fn entry(&self, key: &str) -> Option<&Entry<'a>> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn path(&self, keys: &[&str]) -> Option<&Node<'a>> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry<'a>]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node<'a>]> {
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
            NodeKind::Str(s) => Value::String(s.to_string()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.to_string(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Splits a stream into documents. JSON files are one document and are not split.
/// A literal block scalar (`|` or `|-`) as it stands in the source: its lines and their
/// indentation, decoded when asked. Task code is the largest text an input holds, and a
/// decoded copy of each kept for the whole render weighed a megabyte per thousand apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockText<'a> {
    /// From the first content line to the end of the last line that is not blank.
    lines: &'a str,
    indent: u32,
    strip: bool,
}

impl<'a> BlockText<'a> {
    /// The block scalar whose first content line is at `pos` (where the parser places it) in
    /// `text`, a document whose first line is `first_line`, if it decodes to `value` exactly.
    /// What this reading does not cover (folding, explicit indentation, keep chomping, CR
    /// line ends) is refused, never misread: the parser's value stays the truth.
    pub fn find(text: &'a str, first_line: u32, pos: Pos, value: &str) -> Option<Self> {
        let index = pos.line.checked_sub(first_line)? as usize;
        // The header is the last line above that is not blank: blank lines between it and
        // the first content line are content too.
        let above = text.split_inclusive('\n').take(index);
        let header = above.filter(|l| !l.trim().is_empty()).last()?;
        let start = header.as_ptr() as usize - text.as_ptr() as usize + header.len();
        let strip = Self::header_chomp(header)?;
        let (lines, indent) = Self::content(text.get(start..)?)?;
        let block = BlockText {
            lines,
            indent,
            strip,
        };
        (block.decode() == value).then_some(block)
    }

    /// Whether a header line ends in `|-` (strip) or `|` (clip), before any comment; `None`
    /// for other headers (folded, explicit indentation, keep).
    fn header_chomp(header: &str) -> Option<bool> {
        let line = header.split(" #").next()?.trim_end();
        if line.ends_with(" |-") || line.ends_with(":|-") || line.ends_with("-|-") {
            Some(true)
        } else if line.ends_with(" |") || line.ends_with(":|") || line.ends_with("-|") {
            Some(false)
        } else {
            None
        }
    }

    /// The content lines after a header, and their indentation (the first one's).
    fn content(body: &'a str) -> Option<(&'a str, u32)> {
        let (mut offset, mut end, mut indent) = (0, 0, None);
        for line in body.split_inclusive('\n') {
            let content = line.strip_suffix('\n').unwrap_or(line);
            if content.contains('\r') {
                return None;
            }
            let spaces = content.len() - content.trim_start_matches(' ').len();
            if spaces < content.len() {
                if spaces < *indent.get_or_insert(spaces) {
                    break;
                }
                end = offset + line.len();
            }
            offset += line.len();
        }
        Some((&body[..end], indent?.try_into().ok()?))
    }

    /// The scalar's value, as the parser read it.
    pub fn decode(&self) -> String {
        let mut out = String::with_capacity(self.lines.len());
        for line in self.lines.split_inclusive('\n') {
            let blank = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(line.get(self.indent as usize..).unwrap_or(blank));
        }
        // The parser ends the last line at the end of the text as if it had a line break.
        match (self.strip, out.ends_with('\n')) {
            (true, true) => _ = out.pop(),
            (false, false) if !out.is_empty() => out.push('\n'),
            _ => {}
        }
        out
    }
}

pub fn split_stream(text: &str) -> Vec<Chunk<'_>> {
    chunks(text).collect()
}

/// The documents of a stream, one at a time: a stream of empty documents never becomes a list
/// of them.
pub fn chunks(text: &str) -> Chunks<'_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Chunks {
        text,
        lines: (1u32..).zip(text.split_inclusive('\n')),
        start: 0,
        start_line: 1,
        body_start: 0,
        offset: 0,
        done: false,
    }
}

/// Iterator behind [`chunks`].
pub struct Chunks<'a> {
    text: &'a str,
    lines: std::iter::Zip<std::ops::RangeFrom<u32>, std::str::SplitInclusive<'a, char>>,
    /// Byte offset where the current chunk starts, and where its body starts.
    start: usize,
    start_line: u32,
    body_start: usize,
    offset: usize,
    done: bool,
}

impl<'a> Chunks<'a> {
    /// The chunk from the current start to `end`, unless it is empty.
    fn cut(&self, end: usize) -> Option<Chunk<'a>> {
        (self.start < end || self.body_start < end).then(|| Chunk {
            text: &self.text[self.start..end],
            body: &self.text[self.body_start.max(self.start)..end],
            first_line: self.start_line,
        })
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        while !self.done {
            let Some((line_no, line)) = self.lines.next() else {
                self.done = true;
                return self.cut(self.text.len());
            };
            let bare = line.trim_end_matches(['\n', '\r']);
            let at = self.offset;
            self.offset += line.len();
            if is_marker(bare, "---") {
                let chunk = self.cut(at);
                self.start = at;
                self.start_line = line_no;
                // A bare marker (optionally with a comment) is not part of the body.
                let rest = bare[3..].trim();
                self.body_start = if rest.is_empty() || rest.starts_with('#') {
                    at + line.len()
                } else {
                    at
                };
                if chunk.is_some() {
                    return chunk;
                }
            } else if is_marker(bare, "...") {
                let chunk = self.cut(at);
                self.start = at + line.len();
                self.body_start = self.start;
                self.start_line = line_no + 1;
                if chunk.is_some() {
                    return chunk;
                }
            }
        }
        None
    }
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.starts_with(marker)
        && line[3..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\t')
}

/// What a parse may still spend: alias expansion is counted across every document of one
/// input, so many small bombs cost as much as one large one.
#[derive(Clone, Debug)]
pub struct Budget {
    limits: Limits,
    alias_nodes: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            alias_nodes: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::default())
    }
}

/// Parses one document chunk with the default limits. Returns `None` for an empty (or
/// comment-only) document.
pub fn parse_document<'a>(chunk: &Chunk<'a>) -> Result<Option<Node<'a>>, YamlError> {
    parse_document_with(chunk, &mut Budget::default())
}

/// Parses one document chunk, spending from `budget`.
pub fn parse_document_with<'a>(
    chunk: &Chunk<'a>,
    budget: &mut Budget,
) -> Result<Option<Node<'a>>, YamlError> {
    let limits = budget.limits;
    let first = Pos {
        line: chunk.first_line,
        col: 1,
    };
    if chunk.text.len() as u64 > limits.max_document_bytes {
        return Err(YamlError::limit(
            first,
            Limit::DocumentBytes,
            format!(
                "document of {} bytes is larger than {} bytes",
                chunk.text.len(),
                limits.max_document_bytes
            ),
        ));
    }
    let max_depth = limits.max_depth.min(DEPTH_CEILING);
    // The parser's own nesting limits sit one level above ours, so that our located error,
    // which names the option, is the one a user sees.
    let mut parser_options = granit_parser::Options::default();
    parser_options.flow_nesting_limit = max_depth as usize + 1;
    parser_options.block_nesting_limit = max_depth as usize + 1;
    let mut builder = Builder {
        parser: Parser::new_from_str_with_options(chunk.text, parser_options),
        line_offset: chunk.first_line - 1,
        anchors: HashMap::new(),
        depth: 0,
        max_depth,
        doc_alias_nodes: 0,
        doc_alias_budget: limits
            .alias_nodes_per_byte
            .saturating_mul(chunk.text.len() as u64),
        budget,
    };
    builder.document()
}

/// A node as the builder returns it: with the size figures an alias to it would cost.
struct Built<'a> {
    node: Node<'a>,
    /// Nodes in the subtree, the node itself included.
    nodes: u64,
    /// Collection levels in the subtree (0 for a scalar).
    height: u32,
}

impl<'a> Built<'a> {
    fn leaf(node: Node<'a>) -> Self {
        Built {
            node,
            nodes: 1,
            height: 0,
        }
    }
}

struct Builder<'a, 'b> {
    parser: Parser<'a, granit_parser::StrInput<'a>>,
    line_offset: u32,
    /// Anchor id -> the anchored node with its figures. The parser gives every definition its
    /// own id, so a redefined name never shadows by search.
    anchors: HashMap<usize, Built<'a>>,
    depth: u32,
    max_depth: u32,
    doc_alias_nodes: u64,
    doc_alias_budget: u64,
    budget: &'b mut Budget,
}

impl<'a> Builder<'a, '_> {
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
                let pos = Pos {
                    line: m.line() as u32 + self.line_offset,
                    col: m.col() as u32 + 1,
                };
                // The parser looks ahead, so its nesting limit can trip before ours.
                if matches!(e.kind(), granit_parser::ErrorKind::RecursionLimitExceeded) {
                    return Err(self.too_deep(pos));
                }
                Err(YamlError::syntax(pos, e.info().to_string()))
            }
            None => Err(YamlError::syntax(
                Pos::default(),
                "unexpected end of YAML stream".into(),
            )),
        }
    }

    /// The next event that is not a comment.
    fn next_content(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        loop {
            let (ev, span) = self.next()?;
            #[allow(unreachable_patterns)]
            match ev {
                Event::Comment(..) => continue,
                ev => return Ok((ev, span)),
            }
        }
    }

    fn document(&mut self) -> Result<Option<Node<'a>>, YamlError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next_content()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::DocumentStart(..) => {
                    if root.is_some() {
                        // A chunk holds one document by construction; a second one can only
                        // come from a directive-only remainder.
                        return Err(YamlError::syntax(
                            self.pos(&span),
                            "more than one document in one chunk".into(),
                        ));
                    }
                }
                Event::StreamEnd => return Ok(root),
                ev => {
                    let built = self.node(ev, span)?;
                    root = match built.node.kind {
                        NodeKind::Null => None,
                        _ => Some(built.node),
                    };
                }
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Built<'a>, YamlError> {
        let pos = self.pos(&span);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| t.to_string());
                let kind = resolve_scalar(value, style, tag.as_deref());
                Ok(self.remember(anchor, Built::leaf(Node { kind, pos })))
            }
            Event::Alias(id) => self.alias(id, pos),
            Event::SequenceStart(_, anchor, _) => {
                let built = self.sequence(pos)?;
                Ok(self.remember(anchor, built))
            }
            Event::MappingStart(_, anchor, _) => {
                let built = self.mapping(pos)?;
                Ok(self.remember(anchor, built))
            }
            _ => Err(YamlError::syntax(pos, "unexpected YAML event".into())),
        }
    }

    /// A copy of the anchored node, paid for before it is made: an alias bomb is refused after
    /// a few of its aliases, not after it has filled memory.
    fn alias(&mut self, id: usize, pos: Pos) -> Result<Built<'a>, YamlError> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(YamlError::syntax(pos, "alias to an unknown anchor".into()));
        };
        let (nodes, height) = (anchored.nodes, anchored.height);
        self.charge_alias(nodes, height, pos)?;
        let anchored = &self.anchors[&id];
        Ok(Built {
            node: anchored.node.clone(),
            nodes,
            height,
        })
    }

    /// Pays for the copy an alias makes (`nodes` nodes, `height` levels) from the nesting
    /// limit, the document's budget and the input's.
    fn charge_alias(&mut self, nodes: u64, height: u32, pos: Pos) -> Result<(), YamlError> {
        let limits = self.budget.limits;
        if self.depth + height > self.max_depth {
            return Err(self.too_deep(pos));
        }
        self.doc_alias_nodes = self.doc_alias_nodes.saturating_add(nodes);
        if self.doc_alias_nodes > self.doc_alias_budget {
            return Err(YamlError::limit(
                pos,
                Limit::AliasNodesPerByte,
                format!(
                    "aliases expand this document by more than {} nodes ({} per byte of the document)",
                    self.doc_alias_budget, limits.alias_nodes_per_byte
                ),
            ));
        }
        self.budget.alias_nodes = self.budget.alias_nodes.saturating_add(nodes);
        if self.budget.alias_nodes > limits.max_alias_nodes {
            return Err(YamlError::limit(
                pos,
                Limit::AliasNodes,
                format!(
                    "aliases expand the input by more than {} nodes",
                    limits.max_alias_nodes
                ),
            ));
        }
        Ok(())
    }

    fn too_deep(&self, pos: Pos) -> YamlError {
        YamlError::limit(
            pos,
            Limit::Depth,
            format!(
                "nesting deeper than {} levels (aliases included)",
                self.max_depth
            ),
        )
    }

    fn enter(&mut self, pos: Pos) -> Result<(), YamlError> {
        if self.depth >= self.max_depth {
            return Err(self.too_deep(pos));
        }
        self.depth += 1;
        Ok(())
    }

    fn sequence(&mut self, pos: Pos) -> Result<Built<'a>, YamlError> {
        self.enter(pos)?;
        let mut items = Vec::new();
        let (mut nodes, mut height) = (1u64, 0u32);
        loop {
            let (ev, span) = self.next_content()?;
            if matches!(ev, Event::SequenceEnd) {
                break;
            }
            let item = self.node(ev, span)?;
            nodes = nodes.saturating_add(item.nodes);
            height = height.max(item.height);
            items.push(item.node);
        }
        self.depth -= 1;
        // Every document's tree is kept until the end of a render.
        items.shrink_to_fit();
        Ok(Built {
            node: Node {
                kind: NodeKind::Seq(items),
                pos,
            },
            nodes,
            height: height + 1,
        })
    }

    fn mapping(&mut self, pos: Pos) -> Result<Built<'a>, YamlError> {
        self.enter(pos)?;
        let mut entries = MapBuilder::default();
        let mut merged = MapBuilder::default();
        let (mut nodes, mut height) = (1u64, 0u32);
        loop {
            let (ev, span) = self.next_content()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let (key, value, merge) = self.key_value(ev, span)?;
            nodes = nodes.saturating_add(key.nodes).saturating_add(value.nodes);
            height = height.max(value.height);
            if merge {
                merge_into(&mut merged, value.node)?;
            } else {
                entries.push_unique(key.node, value.node)?;
            }
        }
        for m in merged.entries {
            entries.push_new(m);
        }
        self.depth -= 1;
        let mut entries = entries.entries;
        entries.shrink_to_fit();
        Ok(Built {
            node: Node {
                kind: NodeKind::Map(entries),
                pos,
            },
            nodes,
            height: height + 1,
        })
    }

    /// One mapping key (starting at `ev`) and its value; `true` for a merge key, which only a
    /// plain `<<` is (a quoted "<<" is an ordinary key).
    fn key_value(
        &mut self,
        ev: Event<'a>,
        span: Span,
    ) -> Result<(Built<'a>, Built<'a>, bool), YamlError> {
        let merge = matches!(
            &ev,
            Event::Scalar(v, ScalarStyle::Plain, _, None) if v == "<<"
        );
        let key = self.node(ev, span)?;
        let (ev, span) = self.next_content()?;
        let value = self.node(ev, span)?;
        Ok((key, value, merge))
    }

    fn remember(&mut self, anchor: usize, built: Built<'a>) -> Built<'a> {
        if anchor != 0 {
            let copy = Built {
                node: built.node.clone(),
                nodes: built.nodes,
                height: built.height,
            };
            self.anchors.insert(anchor, copy);
        }
        built
    }
}

/// YAML merge keys: explicit keys win, earlier merged maps win. The merged maps are moved, not
/// copied: what an alias brought in was paid for when it was expanded.
fn merge_into<'a>(merged: &mut MapBuilder<'a>, value: Node<'a>) -> Result<(), YamlError> {
    let pos = value.pos;
    let sources = match value.kind {
        NodeKind::Seq(items) => items,
        _ => vec![value],
    };
    for src in sources {
        let NodeKind::Map(src_entries) = src.kind else {
            return Err(YamlError::syntax(
                pos,
                "a merge key (<<) needs a mapping or a list of mappings".into(),
            ));
        };
        for e in src_entries {
            merged.push_new(e);
        }
    }
    Ok(())
}

/// Mapping entries in order, with a hash index once the map is large, so that a map of many
/// keys costs linear time to check for duplicates.
#[derive(Default)]
struct MapBuilder<'a> {
    entries: Vec<Entry<'a>>,
    /// Key hash -> index of the first entry with that hash.
    index: HashMap<u64, usize>,
}

/// Below this many entries a scan is cheaper than hashing.
const INDEX_FROM: usize = 16;

impl<'a> MapBuilder<'a> {
    fn hash(key: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
    }

    fn find(&self, key: &str) -> Option<&Entry<'a>> {
        if self.entries.len() < INDEX_FROM {
            return self.entries.iter().find(|e| e.key == key);
        }
        let i = *self.index.get(&Self::hash(key))?;
        if self.entries[i].key == key {
            return Some(&self.entries[i]);
        }
        // A hash collision: rare, and only the colliding key pays for a scan.
        self.entries.iter().find(|e| e.key == key)
    }

    /// Adds an entry; a key that is already there is an error, as Kubernetes rejects it.
    fn push_unique(&mut self, key: Node<'a>, value: Node<'a>) -> Result<(), YamlError> {
        let key_pos = key.pos;
        let key_text = key_string(key)?;
        if let Some(prev) = self.find(&key_text) {
            return Err(YamlError::syntax(
                key_pos,
                format!(
                    "duplicate key {key_text:?} (first at line {}); Kubernetes rejects duplicate fields",
                    prev.key_pos.line
                ),
            ));
        }
        self.push(Entry {
            key: key_text,
            key_pos,
            value,
        });
        Ok(())
    }

    fn push(&mut self, entry: Entry<'a>) {
        if self.entries.len() + 1 == INDEX_FROM {
            for (i, e) in self.entries.iter().enumerate() {
                self.index.entry(Self::hash(&e.key)).or_insert(i);
            }
        }
        if self.entries.len() + 1 >= INDEX_FROM {
            self.index
                .entry(Self::hash(&entry.key))
                .or_insert(self.entries.len());
        }
        self.entries.push(entry);
    }

    /// Adds the entry unless its key is already there.
    fn push_new(&mut self, entry: Entry<'a>) {
        if self.find(&entry.key).is_none() {
            self.push(entry);
        }
    }
}

fn key_string(key: Node<'_>) -> Result<Cow<'_, str>, YamlError> {
    Ok(match key.kind {
        NodeKind::Str(s) => s,
        NodeKind::Null => "null".into(),
        NodeKind::Bool(b) => b.to_string().into(),
        NodeKind::Int(i) => i.to_string().into(),
        NodeKind::Float(f) => f.to_string().into(),
        NodeKind::Seq(_) | NodeKind::Map(_) => {
            return Err(YamlError::syntax(
                key.pos,
                "a mapping key must be a scalar".into(),
            ));
        }
    })
}

/// Types a scalar as go-yaml v2 (the decoder behind sigs.k8s.io/yaml) does.
fn resolve_scalar<'a>(value: Cow<'a, str>, style: ScalarStyle, tag: Option<&str>) -> NodeKind<'a> {
    if let Some(tag) = tag {
        let suffix = tag.rsplit([':', '!']).next().unwrap_or("");
        match suffix {
            "str" | "binary" => return NodeKind::Str(value),
            "null" => return NodeKind::Null,
            "bool" | "int" | "float" => {
                if let Some(resolved) = resolve_plain_typed(&value) {
                    return resolved;
                }
            }
            _ => {}
        }
    }
    if style != ScalarStyle::Plain {
        return NodeKind::Str(value);
    }
    resolve_plain_typed(&value).unwrap_or(NodeKind::Str(value))
}

/// The non-string type a plain scalar resolves to, `None` for a string.
fn resolve_plain_typed(value: &str) -> Option<NodeKind<'static>> {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Some(NodeKind::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(NodeKind::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(NodeKind::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(NodeKind::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(NodeKind::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(NodeKind::Float(f64::NAN)),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return None;
    }
    let cleaned: Cow<'_, str> = if value.contains('_') {
        value.replace('_', "").into()
    } else {
        value.into()
    };
    if let Some(i) = parse_go_int(&cleaned) {
        return Some(NodeKind::Int(i));
    }
    if is_yaml_float(&cleaned)
        && let Ok(f) = cleaned.parse::<f64>()
    {
        return Some(NodeKind::Float(f));
    }
    None
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
    // Generated texts are held until the output order is known: keep no doubling slack.
    out.shrink_to_fit();
    out
}

pub(crate) fn pad(out: &mut String, indent: usize) {
    // One copy rather than a push per space: every line of every generated object pads.
    const SPACES: &str = "                                                                ";
    let mut left = indent;
    while left > 0 {
        let n = left.min(SPACES.len());
        out.push_str(&SPACES[..n]);
        left -= n;
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

pub(crate) fn emit_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit_seq(out, a, indent);
        }
        Value::String(s) => emit_str_after_key(out, s, indent),
        other => {
            out.push(' ');
            emit_inline(out, other);
            out.push('\n');
        }
    }
}

/// A string map value: a literal block when it can be one, else on the key's line.
pub(crate) fn emit_str_after_key(out: &mut String, s: &str, indent: usize) {
    match block_chomping(s) {
        Some(chomp) => emit_block(out, s, chomp, indent + 2),
        None => {
            out.push(' ');
            emit_scalar_str(out, s);
            out.push('\n');
        }
    }
}

/// A string list item (after `- `): a literal block when it can be one.
pub(crate) fn emit_str_item(out: &mut String, s: &str, indent: usize) {
    match block_chomping(s) {
        Some(chomp) => {
            out.pop(); // "- |" rather than "-  |"
            emit_block(out, s, chomp, indent + 2);
        }
        None => {
            emit_scalar_str(out, s);
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        emit_seq_item(out, item, indent);
    }
}

pub(crate) fn emit_seq_item(out: &mut String, item: &Value, indent: usize) {
    pad(out, indent);
    out.push_str("- ");
    match item {
        Value::Object(m) if !m.is_empty() => emit_map(out, m, indent + 2, true),
        Value::String(s) => emit_str_item(out, s, indent),
        other => {
            emit_inline(out, other);
            out.push('\n');
        }
    }
}

/// A value on one line: scalars, empty collections, nested lists in flow style.
pub(crate) fn emit_inline(out: &mut String, v: &Value) {
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

pub(crate) fn emit_scalar_str(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        emit_double_quoted(out, s);
    }
}

/// Conservative plain scalars: a letter or `/` first, then letters, digits and `._/:@+=-`,
/// not ending in `:`, with no `::`, and typed as a string by a YAML 1.1 reader. One pass over
/// the bytes: every key and value of every generated object asks.
fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        if !PLAIN_BYTE[c as usize] || (c == b':' && prev == b':') {
            return false;
        }
        prev = c;
    }
    // Starting with a letter or `/`, only the words null, true, yes, off... (at most five
    // letters) resolve to another type; numbers need a digit, sign or dot first.
    prev != b':' && (s.len() > 5 || resolve_plain_typed(s).is_none())
}

/// The bytes a conservative plain scalar may hold.
const PLAIN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'_' | b'/' | b':' | b'@' | b'+' | b'=' | b'-');
        c += 1;
    }
    t
};

/// The chomping indicator when `s` can be an exact literal block, else `None`.
pub(crate) fn block_chomping(s: &str) -> Option<&'static str> {
    // Asked of every string value written; most are short and have no line break.
    let bytes = s.as_bytes();
    if !bytes.contains(&b'\n') || matches!(bytes.first(), Some(b' ' | b'\n')) {
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
    // Mostly ASCII code: one pass over its bytes, characters only when there is more.
    let fits = match ascii_block_fits(bytes) {
        Some(fits) => fits,
        None => s.chars().all(printable) && !has_blank_line_end(bytes),
    };
    if !fits {
        return None;
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    Some(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    })
}

/// Whether ASCII text can be a literal block: printable, and no line ending in white space
/// (it would be kept, but editors and hooks strip it; a quoted string cannot be changed that
/// way). `None` when the text is not all ASCII.
fn ascii_block_fits(bytes: &[u8]) -> Option<bool> {
    let mut prev = 0u8;
    for &c in bytes {
        match c {
            b'\n' if matches!(prev, b' ' | b'\t') => return Some(false),
            b'\n' | b'\t' | b' '..=b'~' => {}
            0x80.. => return None,
            _ => return Some(false),
        }
        prev = c;
    }
    Some(!matches!(prev, b' ' | b'\t'))
}

fn has_blank_line_end(bytes: &[u8]) -> bool {
    let blank_before_break = |w: &[u8]| matches!(w, [b' ' | b'\t', b'\n']);
    bytes.windows(2).any(blank_before_break) || matches!(bytes.last(), Some(b' ' | b'\t'))
}

/// `s` as a literal block with indicator `chomp` (from [`block_chomping`]).
pub(crate) fn emit_block(out: &mut String, s: &str, chomp: &str, indent: usize) {
    out.push(' ');
    out.push_str(chomp);
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

pub(crate) fn emit_double_quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs of characters that need no escape are copied whole.
    let bytes = s.as_bytes();
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        let Some(width) = quoted_escape_width(bytes, i) else {
            i += 1;
            continue;
        };
        out.push_str(&s[run..i]);
        write_quoted_escape(out, s[i..].chars().next().expect("i is a char boundary"));
        i += width;
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// The UTF-8 length of the character at `i` when a double-quoted scalar escapes it: `"`, `\`,
/// C0 and C1 controls, DEL, U+2028, U+2029, U+FEFF, U+FFFE and U+FFFF. Continuation bytes
/// (0x80-0xBF) never start one, so scanning byte by byte finds every such character.
fn quoted_escape_width(b: &[u8], i: usize) -> Option<usize> {
    let next = |k: usize| b.get(i + k).copied().unwrap_or(0);
    match b[i] {
        0x00..=0x1f | b'"' | b'\\' | 0x7f => Some(1),
        0xc2 if (0x80..=0x9f).contains(&next(1)) => Some(2),
        0xe2 if next(1) == 0x80 && matches!(next(2), 0xa8 | 0xa9) => Some(3),
        0xef if matches!((next(1), next(2)), (0xbb, 0xbf) | (0xbf, 0xbe | 0xbf)) => Some(3),
        _ => None,
    }
}

fn write_quoted_escape(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c => out.push_str(&format!("\\u{:04x}", c as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Node<'_> {
        let chunks = split_stream(src);
        parse_document(&chunks[0]).unwrap().unwrap()
    }

    /// Every literal block is either read back from its lines, exactly as the parser read
    /// it, or refused; the cases refused are the ones [`BlockText::find`] does not cover.
    #[test]
    fn block_text_reads_back_literal_blocks() {
        let cases: &[(&str, bool)] = &[
            ("spec:\n  code: |\n    a\n\n      b\n    c\nnext: 1\n", true),
            ("spec:\n  code: |-\n    a\n    b\n\n\nnext: 1\n", true),
            ("code: | # comment\n  x: 1\n  # not a comment\n", true),
            ("code: |\n   a\n   b", true),
            ("code: |\n\n  a\n   \n  b\n", true),
            ("code: |+\n  a\n\n", false),
            ("code: |2\n    a\n", false),
            ("code: >\n  a\n  b\n", false),
            ("code: |\r\n  a\r\n", false),
            ("code: \"a\\nb\"\n", false),
        ];
        for (src, read_back) in cases {
            let root = parse(src);
            let node = root.get("code").or(root.path(&["spec", "code"])).unwrap();
            let value = node.as_str().unwrap();
            let block = BlockText::find(src, 1, node.pos, value);
            assert_eq!(block.is_some(), *read_back, "{src:?}");
            if let Some(b) = block {
                assert_eq!(b.decode(), value, "{src:?}");
            }
        }
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

    fn parse_limited(src: &str, limits: Limits) -> Result<Option<Node<'_>>, YamlError> {
        let chunk = split_stream(src).remove(0);
        parse_document_with(&chunk, &mut Budget::new(limits))
    }

    /// The billion-laughs document: each level multiplies by nine.
    fn laughs(levels: usize) -> String {
        let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..levels {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        s
    }

    #[test]
    fn alias_expansion_is_refused_before_it_is_built() {
        let err = parse_limited(&laughs(9), Limits::default()).unwrap_err();
        assert_eq!(err.limit, Some(Limit::AliasNodesPerByte), "{err:?}");
        // Refused on level 3 (line 4), before level 4 exists: 4 per byte of a 486-byte
        // document is 1,944 nodes; levels 1 and 2 add 90 + 819, level 3 would add 7,380.
        assert_eq!(err.pos.line, 4, "{err:?}");
        // The same document is fine when the limit is raised, and expands to 9^8 laughs.
        let raised = Limits {
            alias_nodes_per_byte: 100_000,
            max_alias_nodes: u64::MAX,
            ..Limits::default()
        };
        let text = laughs(5);
        let n = parse_limited(&text, raised).unwrap().unwrap();
        let a4 = n.get("a4").unwrap().to_json();
        assert_eq!(a4.to_string().matches("lol").count(), 9usize.pow(5));
    }

    #[test]
    fn alias_budget_is_shared_by_the_documents_of_an_input() {
        let doc = "a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [*a, *a, *a, *a]\n";
        let limits = Limits {
            max_alias_nodes: 100,
            ..Limits::default()
        };
        let mut budget = Budget::new(limits);
        let chunk = split_stream(doc).remove(0);
        // Each document adds 4 x 9 nodes: the third one crosses 100.
        assert!(parse_document_with(&chunk, &mut budget).is_ok());
        assert!(parse_document_with(&chunk, &mut budget).is_ok());
        let err = parse_document_with(&chunk, &mut budget).unwrap_err();
        assert_eq!(err.limit, Some(Limit::AliasNodes));
    }

    #[test]
    fn merge_keys_pay_for_what_they_bring() {
        let mut s =
            String::from("m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7}\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!("m{i}: &m{i} {{<<: [*m{p}, *m{p}, *m{p}, *m{p}], v{i}: [*m{p}, *m{p}, *m{p}, *m{p}]}}\n"));
        }
        let err = parse_limited(&s, Limits::default()).unwrap_err();
        assert_eq!(err.limit, Some(Limit::AliasNodesPerByte), "{err:?}");
    }

    #[test]
    fn nesting_counts_aliases() {
        let mut s = format!("a0: &a0 {}1{}\n", "[".repeat(100), "]".repeat(100));
        s.push_str(&format!(
            "a1: &a1 {}*a0{}\n",
            "[".repeat(100),
            "]".repeat(100)
        ));
        assert!(parse_limited(&s, Limits::default()).is_ok());
        s.push_str(&format!("a2: {}*a1{}\n", "[".repeat(100), "]".repeat(100)));
        let err = parse_limited(&s, Limits::default()).unwrap_err();
        assert_eq!(err.limit, Some(Limit::Depth), "{err:?}");
        assert_eq!(err.pos.line, 3);
    }

    #[test]
    fn nesting_is_refused_by_our_limit_in_every_style() {
        for src in [
            format!("a: {}", "[".repeat(100_000)),
            format!("a: {}", "{a: ".repeat(100_000)),
            (0..400).map(|i| format!("{}a:\n", " ".repeat(i))).collect(),
            format!("{}1", "- ".repeat(400)),
        ] {
            let err = parse_limited(&src, Limits::default()).unwrap_err();
            assert_eq!(err.limit, Some(Limit::Depth), "{err:?}");
        }
        let ok = format!("a: {}1{}", "[".repeat(255), "]".repeat(255));
        assert!(parse_limited(&ok, Limits::default()).is_ok());
    }

    #[test]
    fn documents_over_the_size_limit_are_refused_unparsed() {
        let limits = Limits {
            max_document_bytes: 10,
            ..Limits::default()
        };
        let err = parse_limited("a: 1\n---\nb: 12345678\n", limits);
        assert!(err.is_ok(), "the first document is 5 bytes");
        let chunk = split_stream("a: 1\n---\nb: 12345678\n").remove(1);
        let err = parse_document_with(&chunk, &mut Budget::new(limits)).unwrap_err();
        assert_eq!(err.limit, Some(Limit::DocumentBytes));
        assert_eq!(err.pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn large_maps_find_duplicates_and_keep_merge_order() {
        let mut s = String::from("base: &b {k3: merged, extra: merged}\nm:\n  <<: *b\n");
        for i in 0..1000 {
            s.push_str(&format!("  k{i}: {i}\n"));
        }
        let n = parse_limited(&s, Limits::default()).unwrap().unwrap();
        let m = n.get("m").unwrap();
        assert_eq!(
            m.get("k3").unwrap().kind,
            NodeKind::Int(3),
            "explicit keys win"
        );
        assert_eq!(m.get("extra").unwrap().as_str(), Some("merged"));
        assert_eq!(m.as_map().unwrap().len(), 1001);
        assert_eq!(
            m.as_map().unwrap().last().unwrap().key,
            "extra",
            "merged keys come last"
        );
        s.push_str("  k500: again\n");
        let err = parse_limited(&s, Limits::default()).unwrap_err();
        assert!(err.message.contains("duplicate key \"k500\""), "{err:?}");
        assert_eq!(err.limit, None);
    }

    #[test]
    fn every_marker_counts_as_a_document() {
        let text = "---\n".repeat(1000) + "a: 1\n";
        // Every marker starts a document that counts against max-documents.
        assert_eq!(chunks(&text).count(), 1000);
        assert_eq!(chunks(&text).last().unwrap().body, "a: 1\n");
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

    /// The scalar writers as first written (char by char, `contains`, `split`): the
    /// single-pass ones must decide and write exactly the same.
    mod first_written {
        pub fn is_plain_safe(s: &str) -> bool {
            let b = s.as_bytes();
            let Some(&first) = b.first() else {
                return false;
            };
            (first.is_ascii_alphabetic() || first == b'/')
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._/:@+=-".contains(c))
                && !s.ends_with(':')
                && !s.contains("::")
                && super::resolve_plain_typed(s).is_none()
        }

        pub fn block_chomping(s: &str) -> Option<&'static str> {
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

        pub fn double_quoted(s: &str) -> String {
            let mut out = String::from('"');
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
            out
        }
    }

    const SCALARS: &[&str] = &[
        "",
        "a",
        "on",
        "Off",
        "NULL",
        "nulls",
        "/x",
        "a::b",
        "a:",
        "a:b",
        "a: b",
        "x_y.z@h+1=2-",
        "1.0",
        "a b",
        "é",
        "\u{7f}\u{80}\u{9f}\u{a0}",
        "\u{2027}\u{2028}\u{2029}\u{202a}",
        "\u{feff}\u{fffe}\u{ffff}\u{fffd}",
        "q\"b\\s",
        "\u{1}\r\n\t",
        "line \nnext\t\nend ",
        "code\n  indented\n",
        "ends\n\n",
        "😀 x",
        "\u{85}",
        "yes",
        "True",
        "a\u{e2}",
    ];

    #[test]
    fn scalar_writers_match_the_first_written() {
        for s in SCALARS {
            assert_eq!(is_plain_safe(s), first_written::is_plain_safe(s), "{s:?}");
            let mut out = String::new();
            emit_double_quoted(&mut out, s);
            assert_eq!(out, first_written::double_quoted(s), "{s:?}");
            assert_eq!(block_chomping(s), first_written::block_chomping(s), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn scalar_writers_match_on_any_text(s in "(?s)[a-z:/_ \t\n\"\\\\\u{0}-\u{1f}\u{7f}-\u{a0}\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}é]{0,12}") {
            proptest::prop_assert_eq!(is_plain_safe(&s), first_written::is_plain_safe(&s));
            let mut out = String::new();
            emit_double_quoted(&mut out, &s);
            proptest::prop_assert_eq!(out, first_written::double_quoted(&s));
            proptest::prop_assert_eq!(block_chomping(&s), first_written::block_chomping(&s));
        }
    }
}
