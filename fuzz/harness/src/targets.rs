//! One function per fuzz target. Inputs are bytes; text targets read them as lossy UTF-8
//! (adapters refuse invalid UTF-8 before the library sees it, so nothing is lost).

use std::collections::{BTreeMap, BTreeSet};

use klt_render::krm::{self, config, transform, wire};
use klt_render::options::{KEPTN_2, KLT_0_8, KLT_0_9};
use klt_render::yaml::{self, Node, NodeKind};
use klt_render::{Mode, Options, Output, SourceFile, document, schema, workload};
use serde_json::Value;

use crate::secrets;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Lines as YAML counts them: a lone CR breaks a line too (granit-parser's positions do).
fn lines(s: &str) -> u32 {
    s.replace("\r\n", "\n").split(['\n', '\r']).count() as u32
}

// ---- yaml_reader ---------------------------------------------------------------------------

/// `split_stream` + `parse_document`: chunks are exact slices in order, positions lie inside
/// their chunk, and every parsed document survives `emit` → parse unchanged.
pub fn yaml_reader(data: &[u8]) {
    let text = text(data);
    let chunks = yaml::split_stream(&text);
    let mut last_line = 0;
    for chunk in &chunks {
        assert!(
            chunk.text.ends_with(chunk.body),
            "body is a suffix of the chunk text"
        );
        assert!(chunk.first_line >= last_line.max(1), "chunks are in order");
        last_line = chunk.first_line;
        let end = chunk.first_line + lines(chunk.text);
        match yaml::parse_document(chunk) {
            Ok(Some(node)) => {
                check_positions(&node, chunk.first_line, end);
                round_trip(&node.to_json());
            }
            Ok(None) => {}
            Err(e) => assert!(
                e.pos.line == 0 || (chunk.first_line..=end).contains(&e.pos.line),
                "error position {:?} outside its chunk (lines {}..={end})",
                e.pos,
                chunk.first_line
            ),
        }
    }
}

fn check_positions(node: &Node, first: u32, last: u32) {
    assert!(
        (first..=last).contains(&node.pos.line),
        "node at {:?} outside its chunk (lines {first}..={last})",
        node.pos
    );
    match &node.kind {
        NodeKind::Seq(items) => items.iter().for_each(|n| check_positions(n, first, last)),
        NodeKind::Map(entries) => entries
            .iter()
            .for_each(|e| check_positions(&e.value, first, last)),
        _ => {}
    }
}

/// What the emitter writes, the reader reads back as the same value (as one document).
fn round_trip(value: &Value) {
    let emitted = yaml::emit(value);
    let chunks = yaml::split_stream(&emitted);
    let docs: Vec<Node> = chunks
        .iter()
        .filter_map(|c| {
            yaml::parse_document(c)
                .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e:?}\n{emitted}"))
        })
        .collect();
    // A document that is only `null` reads as an empty one, as in every YAML stream reader.
    if value.is_null() && docs.is_empty() {
        return;
    }
    assert_eq!(
        docs.len(),
        1,
        "emitted one value as {} documents:\n{emitted}",
        docs.len()
    );
    assert_eq!(
        &docs[0].to_json(),
        value,
        "emit → parse changed the value:\n{emitted}"
    );
}

// ---- gojson ---------------------------------------------------------------------------------

/// The Go-JSON encoder against serde_json plus Go's HTML-safe escapes, and reading back.
pub fn gojson(data: &[u8]) {
    let s = text(data);
    let mut go = String::new();
    klt_render::gojson::write_str(&mut go, &s);
    assert_eq!(go, go_escape(&serde_json::to_string(&s).unwrap()));
    assert_eq!(serde_json::from_str::<String>(&go).unwrap(), s);

    // A map[string]string from `key=value` lines.
    let map: BTreeMap<String, String> = s
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let encoded = klt_render::gojson::string_map(&map);
    let back: serde_json::Map<String, Value> = serde_json::from_str(&encoded).unwrap();
    let keys: Vec<&String> = back.keys().collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sorted bytewise");
    assert_eq!(back.len(), map.len());
    for (k, v) in &map {
        assert_eq!(back[k].as_str(), Some(v.as_str()));
    }
    let first = s.lines().next().unwrap_or("");
    let st = klt_render::gojson::struct_with_map(&[("name", first), ("b", "")], ("m", &map));
    let back: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(back["name"].as_str(), Some(first));
    assert_eq!(back.get("m").is_some(), !map.is_empty(), "omitempty");

    // Any JSON value: sorted keys, no raw HTML characters, same value back.
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let go = klt_render::gojson::value(&v);
        assert!(
            !go.contains(['<', '>', '&', '\u{2028}', '\u{2029}']),
            "HTML characters escaped: {go}"
        );
        let back: Value = serde_json::from_str(&go).unwrap();
        assert!(
            same_json(&back, &v),
            "gojson value reads back as {back}, not {v}"
        );
    }
}

/// JSON equality up to the last bit of a float: serde_json's default float parser (without
/// its `float_roundtrip` feature, which klt-render does not enable) may read a long literal
/// one ulp away from the value that was written, so an exact comparison would blame the
/// writer for the reader's rounding.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || ((x - y) / x.abs().max(y.abs())).abs() < 1e-15
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn go_escape(serde: &str) -> String {
    serde
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

// ---- model ----------------------------------------------------------------------------------

/// Documents read as the renderer reads them: schema check, then the Keptn model readers for
/// served kinds, the workload reader for workload kinds.
pub fn model(data: &[u8]) {
    let file = SourceFile {
        path: if data.first() == Some(&b'{') {
            "in.json".into()
        } else {
            "in.yaml".into()
        },
        text: text(data),
    };
    let files = [file];
    let mut diags = Vec::new();
    let docs = document::load(&files, &mut diags);
    let end = lines(&files[0].text) + 1;
    for doc in &docs {
        let issues = schema::check(&doc.api_version, &doc.kind, &doc.root);
        if let Some(issues) = &issues {
            assert!(
                issues
                    .windows(2)
                    .all(|w| (w[0].pos, &w[0].field) <= (w[1].pos, &w[1].field)),
                "schema issues sorted"
            );
            for i in issues {
                assert!(i.pos.line <= end, "issue {i:?} past the end of the file");
            }
        }
        if doc.group() == klt_render::model::GROUP && issues.is_some() {
            match doc.kind.as_ref() {
                "KeptnTaskDefinition" => {
                    let _ = klt_render::model::read_task_definition(doc, &mut diags);
                }
                "KeptnApp" => {
                    let _ = klt_render::model::read_app(doc);
                    let _ = klt_render::model::unrendered_lists(doc.root.get("spec"));
                }
                "KeptnAppContext" => {
                    let _ = klt_render::model::read_app_context(doc);
                    let _ = klt_render::model::unrendered_lists(doc.root.get("spec"));
                }
                "KeptnTask" => {
                    if let Some(t) = klt_render::model::read_hand_task(doc, &mut diags) {
                        let _ = t.context.to_json(true);
                    }
                }
                _ => {}
            }
        }
        if workload::is_workload_kind(doc)
            && let Some(w) = workload::derive(doc)
        {
            let _ = w.keptn_name();
        }
    }
    for d in &diags {
        assert_eq!(d.file, files[0].path);
        assert!(
            d.pos.line <= end,
            "diagnostic past the end of the file: {d:?}"
        );
    }
    // Go durations come from user text (spec.timeout).
    for l in files[0].text.lines().take(16) {
        let _ = klt_render::model::go_duration_seconds(l.trim());
    }
}

// ---- render ---------------------------------------------------------------------------------

/// The first byte chooses the options; the rest is up to 8 files separated by NUL bytes (YAML
/// forbids NUL, so no input is lost to the split).
pub fn decode_render_input(data: &[u8]) -> (Options, Vec<SourceFile>) {
    let (flags, rest) = data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let mode = if flags & 1 != 0 {
        Mode::Hooks
    } else {
        Mode::Waves
    };
    let opts = Options {
        mode,
        profile: match (flags >> 1) & 3 {
            1 => KLT_0_9,
            2 => KLT_0_8,
            _ => KEPTN_2,
        },
        keep_keptn: flags & 8 != 0,
        // Options::from_settings refuses records in hooks mode; never build what it refuses.
        records: flags & 16 != 0 && mode == Mode::Waves,
        namespace: (flags & 32 != 0).then(|| "fuzz-ns".to_string()),
        definition_namespace: (flags & 64 != 0).then(|| "keptn-system".to_string()),
        hook_delete_policy: if flags & 9 == 9 {
            "HookSucceeded,HookFailed".into()
        } else {
            "BeforeHookCreation".into()
        },
        ..Options::default()
    };
    let json_names = flags & 128 != 0;
    let files = rest
        .split(|b| *b == 0)
        .take(8)
        .enumerate()
        .map(|(i, part)| {
            let json = json_names && part.trim_ascii_start().first() == Some(&b'{');
            SourceFile {
                path: format!("in/{i}.{}", if json { "json" } else { "yaml" }),
                text: text(part),
            }
        })
        .collect();
    (opts, files)
}

/// The whole renderer (and `check`'s lints) on a file set with injected Secrets.
pub fn render(data: &[u8]) {
    let (opts, mut files) = decode_render_input(data);
    let check_leaks = !files.iter().any(|f| secrets::input_has_marker(&f.text));
    if check_leaks {
        let targets = {
            let mut ignored = Vec::new();
            let docs = document::load(&files, &mut ignored);
            let defined: BTreeSet<(Option<String>, String)> = docs
                .iter()
                .filter(|d| d.kind == "Secret")
                .map(|d| (d.namespace.as_deref().map(str::to_string), d.name.to_string()))
                .collect();
            secrets::names_from_nodes(
                docs.iter()
                    .filter(|d| d.group() == klt_render::model::GROUP)
                    .map(|d| (&d.root, d.namespace.as_deref().map(str::to_string))),
                &defined,
            )
        };
        let mut text = String::new();
        for s in secrets::secret_objects(&targets) {
            text.push_str("---\n");
            text.push_str(&serde_json::to_string(&s).unwrap());
            text.push('\n');
        }
        files.push(SourceFile {
            path: "fuzz/injected-secrets.yaml".into(),
            text,
        });
    }

    let out = klt_render::render(&files, &opts);
    if out.has_errors() {
        assert!(out.documents.is_empty(), "an error render has documents");
    }
    let stream = out.to_yaml();
    reads_back(&out, &stream);

    let again = klt_render::render(&files, &opts);
    assert_eq!(again.to_yaml(), stream, "render is not deterministic");
    assert_eq!(
        again.diagnostics, out.diagnostics,
        "diagnostics are not deterministic"
    );
    drop(again);

    let mut reversed = files.clone();
    reversed.reverse();
    let rev = klt_render::render(&reversed, &opts);
    assert_eq!(
        rev.has_errors(),
        out.has_errors(),
        "file order changes errors"
    );
    assert_eq!(rev.to_yaml(), stream, "file order changes the output");
    drop(rev);

    let lints = klt_render::lint::lint(&files, &opts);
    if check_leaks {
        secrets::assert_no_leak_in_diagnostics(&out.diagnostics, "render");
        secrets::assert_no_leak_in_diagnostics(&lints, "lint");
        for d in out.documents.iter().filter(|d| d.kind != "Secret") {
            if let Some(m) = secrets::leak(&d.text) {
                panic!(
                    "secret marker {m:?} leaked into {} {}:\n{}",
                    d.kind, d.name, d.text
                );
            }
        }
    }
}

/// The output stream parses with our reader into exactly the output documents.
fn reads_back(out: &Output, stream: &str) {
    let docs: Vec<Node> = yaml::split_stream(stream)
        .iter()
        .filter_map(|c| {
            yaml::parse_document(c)
                .unwrap_or_else(|e| panic!("output does not parse: {e:?}\n{stream}"))
        })
        .collect();
    assert_eq!(
        docs.len(),
        out.documents.len(),
        "output documents do not read back one for one:\n{stream}"
    );
    for (node, d) in docs.iter().zip(&out.documents) {
        assert_eq!(
            node.get("kind").and_then(Node::as_str),
            Some(d.kind.as_str()),
            "kind of {} reads back differently",
            d.name
        );
        if d.generated {
            round_trip(&node.to_json());
        }
    }
}

// ---- krm_wire -------------------------------------------------------------------------------

const DEFAULT_CONFIG: &str =
    "apiVersion: klt-render.dev/v1alpha1\nkind: KltRender\nmetadata:\n  name: klt\n";

/// `klt-render krm`: a ResourceList (YAML or JSON) on stdin; with a NUL byte, the part before
/// it is a legacy plugin config and the part after it the legacy plugin's stdin stream.
pub fn krm_wire(data: &[u8]) {
    let text = text(data);
    let (config, stdin) = match text.split_once('\0') {
        Some((c, s)) => (c, s),
        None => (DEFAULT_CONFIG, text.as_str()),
    };
    resource_list(stdin);
    legacy(config, stdin);
}

fn resource_list(stdin: &str) {
    let parsed = wire::parse_resource_list(stdin);
    let first = krm::resource_list(stdin);
    assert_eq!(krm::resource_list(stdin), first, "krm is not deterministic");
    let Ok(rl) = parsed else {
        assert!(
            first.0.is_none() && !first.2,
            "unreadable stdin gives no stdout"
        );
        return;
    };
    check_resource_list_run(&rl, &first);

    // Again with Secrets injected, re-serialized the way the input was written.
    if secrets::input_has_marker(stdin) {
        return;
    }
    let defined: BTreeSet<(Option<String>, String)> = rl
        .items
        .iter()
        .filter(|i| i.get("kind").and_then(Value::as_str) == Some("Secret"))
        .filter_map(|i| {
            let name = i.pointer("/metadata/name")?.as_str()?.to_string();
            let ns = i
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Some((ns, name))
        })
        .collect();
    let mut items = rl.items.clone();
    items.extend(secrets::secret_objects(&secrets::names_from_values(
        rl.items.iter(),
        &defined,
    )));
    let input = reserialize(&rl, &items);
    let run = krm::resource_list(&input);
    let rl2 = wire::parse_resource_list(&input).expect("own output parses");
    check_resource_list_run(&rl2, &run);
    if let Some(m) = secrets::leak(&run.1) {
        panic!("secret marker {m:?} leaked into krm stderr:\n{}", run.1);
    }
    if let Some(out) = &run.0 {
        let back = wire::parse_stream(out).unwrap_or_default();
        for doc in &back {
            if let Some(results) = doc.get("results") {
                let t = results.to_string();
                if let Some(m) = secrets::leak(&t) {
                    panic!("secret marker {m:?} leaked into krm results: {t}");
                }
            }
        }
        let out_rl = wire::parse_resource_list(out).expect("output parses");
        for item in &out_rl.items {
            if item.get("kind").and_then(Value::as_str) == Some("Secret") {
                continue;
            }
            let t = item.to_string();
            if let Some(m) = secrets::leak(&t) {
                panic!("secret marker {m:?} leaked into a krm output item: {t}");
            }
        }
    }
}

/// A ResourceList text with `functionConfig`, in the list's format.
fn reserialize(rl: &wire::ResourceList, items: &[Value]) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("apiVersion".into(), Value::from(rl.api_version.clone()));
    obj.insert("kind".into(), Value::from(rl.kind.clone()));
    obj.insert("items".into(), Value::Array(items.to_vec()));
    if let Some(fc) = &rl.function_config {
        obj.insert("functionConfig".into(), fc.clone());
    }
    let v = Value::Object(obj);
    match rl.format {
        wire::Format::Yaml => yaml::emit(&v),
        wire::Format::Json => serde_json::to_string_pretty(&v).unwrap(),
    }
}

/// The contract of a ResourceList run whose stdin parsed.
fn check_resource_list_run(rl: &wire::ResourceList, run: &(Option<String>, String, bool)) {
    let (out, stderr, ok) = run;
    let out = out
        .as_ref()
        .unwrap_or_else(|| panic!("a readable ResourceList gives stdout; stderr: {stderr}"));
    let back = wire::parse_resource_list(out)
        .unwrap_or_else(|e| panic!("krm output does not parse back: {e}\n{out}"));
    assert_eq!(back.format, rl.format, "output format differs from input");
    assert_eq!(
        (&back.api_version, &back.kind),
        (&rl.api_version, &rl.kind),
        "apiVersion/kind echoed"
    );
    if *ok {
        let resources = rl
            .items
            .iter()
            .filter(|i| !transform::is_own_config(i, rl.function_config.as_ref()))
            .count();
        assert!(
            resources == 0 || !back.items.is_empty(),
            "a non-empty input came back empty"
        );
    } else {
        assert!(
            back.items.len() == rl.items.len()
                && back
                    .items
                    .iter()
                    .zip(&rl.items)
                    .all(|(a, b)| same_json(a, b)),
            "an error run returns the input items"
        );
        assert!(!stderr.is_empty(), "an error run says why");
    }
}

fn legacy(config: &str, stdin: &str) {
    let run = krm::legacy(config, stdin);
    assert_eq!(
        krm::legacy(config, stdin),
        run,
        "legacy is not deterministic"
    );
    let (out, stderr, ok) = &run;
    if *ok {
        let out = out.as_ref().expect("a legacy success writes stdout");
        let docs = wire::parse_stream(out)
            .unwrap_or_else(|e| panic!("legacy output does not parse back: {e}\n{out}"));
        let inputs = wire::parse_stream(stdin).expect("stdin parsed on success");
        let config = wire::parse_stream(config).ok().and_then(|mut c| c.pop());
        let resources = inputs
            .iter()
            .filter(|i| !transform::is_own_config(i, config.as_ref()))
            .count();
        assert!(
            resources == 0 || !docs.is_empty(),
            "a non-empty input came back empty"
        );
    } else {
        assert!(out.is_none(), "a legacy error writes nothing to stdout");
        assert!(!stderr.is_empty(), "a legacy error says why");
    }
}

// ---- krm_config -----------------------------------------------------------------------------

/// functionConfig and the item-level KRM readers on one value (YAML or JSON).
pub fn krm_config(data: &[u8]) {
    let text = text(data);
    let value = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(&text).ok()
    } else {
        wire::parse_stream(&text)
            .ok()
            .and_then(|mut d| (!d.is_empty()).then(|| d.remove(0)))
    };
    let Some(value) = value else { return };

    match config::options(Some(&value)) {
        Ok(o) => {
            if o.records {
                assert_eq!(o.mode, Mode::Waves, "records need waves mode");
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            if let Some(field) = &e.field {
                assert!(
                    field_exists(&value, field),
                    "error names a missing field {field:?}: {e:?}"
                );
            }
        }
    }

    let stripped = transform::strip_bookkeeping(&value);
    assert_eq!(
        transform::strip_bookkeeping(&stripped),
        stripped,
        "strip_bookkeeping is idempotent"
    );
    if let Some(ann) = stripped
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        assert!(ann.keys().all(|k| !transform::is_bookkeeping(k)));
    }
    let _ = transform::needs_hash_suffix(&value);
    let _ = wire::ResourceRef::of(&value);
    let _ = wire::FileRef::of(&value);

    // The value as a one-item list through the whole transformation.
    let outcome = transform::transform(std::slice::from_ref(&value), None, "items");
    if outcome.errors() == 0 {
        assert!(outcome.items.is_some(), "no errors, but no items");
    }
}

/// Whether a dotted field path (`spec.mode`) names something in `v`; keys may hold dots.
fn field_exists(v: &Value, field: &str) -> bool {
    if v.get(field).is_some() {
        return true;
    }
    field.match_indices('.').any(|(i, _)| {
        v.get(&field[..i])
            .is_some_and(|next| field_exists(next, &field[i + 1..]))
    })
}
