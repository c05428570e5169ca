//! Keptn evaluations as the renderer reads them: KeptnEvaluationDefinition (every served
//! version), KeptnMetric and KeptnMetricsProvider (metrics.keptn.sh), and the resolution of
//! one evaluation use (an app or workload phase naming a definition) into what `klt-evaluate`
//! runs: the `KLT_EVALUATION` document of the Job contract (`evaluation_job` builds the Job).
//!
//! Lookups follow Keptn: the definition in the evaluation's namespace, then the fallback
//! definition namespace (Keptn's operator namespace); a `keptnMetricRef` in its own namespace
//! when it names one, else the evaluation's, then the fallback; a metric's provider in the
//! metric's namespace. v1alpha1/v1alpha2 definitions name their provider in `spec.source`,
//! looked up as a KeptnMetricsProvider in the evaluation's namespace, then the fallback
//! (Keptn's KeptnEvaluationProvider of those versions is not read).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::document::{Doc, scalar_string};
use crate::job::ByName;
use crate::model::{Spanned, go_duration_seconds};
use crate::yaml::{Node, NodeKind, Pos};

pub const METRICS_GROUP: &str = "metrics.keptn.sh";

/// Provider types `klt-evaluate` queries (the evaluator's `EVAL-PROVIDERS`); any other type
/// is a located error, never a silent pass.
pub const IMPLEMENTED_PROVIDERS: &[&str] =
    &["prometheus", "thanos", "cortex", "datadog", "dynatrace"];

/// Whether a metrics.keptn.sh object is one the renderer reads.
pub fn is_metrics_kind(doc: &Doc<'_>) -> bool {
    doc.group() == METRICS_GROUP && matches!(&*doc.kind, "KeptnMetric" | "KeptnMetricsProvider")
}

/// One objective as written: its metric reference (or, in v1alpha1/v1alpha2, its own name
/// and query) and its target.
#[derive(Debug)]
pub struct Objective {
    /// `keptnMetricRef.name`, or the v1alpha1 objective `name`.
    pub name: Spanned<String>,
    pub metric_namespace: Option<String>,
    /// The v1alpha1/v1alpha2 query; `None` in the keptnMetricRef form.
    pub query: Option<Spanned<String>>,
    pub target: Spanned<String>,
}

#[derive(Debug)]
pub struct EvaluationDefinition<'d> {
    pub doc: &'d Doc<'d>,
    pub retries: i64,
    pub retry_interval: String,
    /// v1alpha1/v1alpha2 `spec.source`: the provider's name.
    pub source: Option<Spanned<String>>,
    pub objectives: Vec<Objective>,
}

#[derive(Debug)]
pub struct Metric<'d> {
    pub doc: &'d Doc<'d>,
    pub provider: Option<Spanned<String>>,
    pub query: String,
    pub query_pos: Pos,
    /// `spec.range` fields in contract order, only those set.
    pub range: Vec<(&'static str, serde_json::Value)>,
}

#[derive(Debug)]
pub struct Provider<'d> {
    pub doc: &'d Doc<'d>,
    /// `spec.type`, else the provider's name (Keptn's `GetType`, for v1alpha2 providers).
    pub kind: String,
    pub kind_pos: Pos,
    pub kind_field: &'static str,
    pub target_server: String,
    pub insecure: bool,
    /// `secretKeyRef`: Secret name, key (when set) and `optional` (when set).
    pub secret: Option<(String, Option<String>, Option<bool>)>,
    /// Where `secretKeyRef` is, for messages (read now: the tree may be gone later).
    pub secret_pos: Pos,
}

/// The evaluation kinds of the input, by namespace and name.
#[derive(Default)]
pub struct Catalog<'d> {
    pub definitions: ByName<'d, EvaluationDefinition<'d>>,
    pub metrics: ByName<'d, Metric<'d>>,
    pub providers: ByName<'d, Provider<'d>>,
    /// What the did-you-means of missing names may still compare.
    pub suggestions: crate::suggest::Budget,
}

impl<'d> Catalog<'d> {
    /// Reads a KeptnEvaluationDefinition, KeptnMetric or KeptnMetricsProvider; other kinds
    /// are not this catalog's (`false`).
    pub fn read(&mut self, doc: &'d Doc<'d>, ns: String, diags: &mut Vec<Diagnostic>) -> bool {
        let name = doc.name.clone();
        match &*doc.kind {
            "KeptnEvaluationDefinition" => {
                self.definitions
                    .insert(ns, name, read_definition(doc, diags));
            }
            "KeptnMetric" if doc.group() == METRICS_GROUP => {
                self.metrics.insert(ns, name, read_metric(doc));
            }
            "KeptnMetricsProvider" if doc.group() == METRICS_GROUP => {
                self.providers.insert(ns, name, read_provider(doc));
            }
            _ => return false,
        }
        true
    }
}

fn str_at(node: Option<&Node>) -> (String, Pos) {
    match node {
        Some(n) => (scalar_string(n).unwrap_or_default(), n.pos),
        None => (String::new(), Pos::default()),
    }
}

fn spanned(node: Option<&Node>, field: String) -> Option<Spanned<String>> {
    let n = node?;
    Some(Spanned {
        value: scalar_string(n)?,
        pos: n.pos,
        field,
    })
}

pub fn read_definition<'d>(
    doc: &'d Doc<'d>,
    diags: &mut Vec<Diagnostic>,
) -> EvaluationDefinition<'d> {
    let spec = doc.root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let retry_interval = match get("retryInterval") {
        None => "5s".to_string(),
        Some(n) => {
            let text = scalar_string(n).unwrap_or_default();
            if go_duration_seconds(&text).is_none_or(|s| s < 0) {
                diags.push(
                    doc.diag(
                        "KLT065",
                        Severity::Error,
                        n.pos,
                        Some("spec.retryInterval".into()),
                        format!("retryInterval {text:?} is not a Go duration"),
                        Some(
                            "write a duration such as \"5s\" or \"1m\" (units ns, us, ms, s, m, h)"
                                .into(),
                        ),
                    ),
                );
            }
            text
        }
    };
    let retries = match get("retries").map(|n| &n.kind) {
        Some(NodeKind::Int(i)) => *i,
        _ => 10,
    };
    let objectives = get("objectives")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, o)| read_objective(doc, o, i, diags))
        .collect();
    EvaluationDefinition {
        doc,
        retries,
        retry_interval,
        source: spanned(get("source"), "spec.source".into()),
        objectives,
    }
}

fn read_objective(
    doc: &Doc<'_>,
    o: &Node,
    i: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Objective> {
    let at = |k: &str| format!("spec.objectives[{i}].{k}");
    let target = spanned(o.get("evaluationTarget"), at("evaluationTarget"))?;
    if let Err(why) = parse_target(&target.value) {
        diags.push(doc.diag(
            "KLT062",
            Severity::Error,
            target.pos,
            Some(target.field.clone()),
            format!("evaluationTarget {:?} cannot be parsed: {why}", target.value),
            Some("write \"<\" or \">\" and a number, such as \">1\" or \"<0.5\": Keptn's evaluation controller knows no other operator".into()),
        ));
    }
    let (name, metric_namespace, query) = match o.get("keptnMetricRef") {
        Some(r) => (
            spanned(r.get("name"), at("keptnMetricRef.name"))?,
            r.get("namespace")
                .and_then(scalar_string)
                .filter(|s| !s.is_empty()),
            None,
        ),
        None => {
            let query = spanned(o.get("query"), at("query"))?;
            if query.value.trim().is_empty() {
                diags.push(empty_query(doc, query.pos, &query.field));
            }
            (spanned(o.get("name"), at("name"))?, None, Some(query))
        }
    };
    Some(Objective {
        name,
        metric_namespace,
        query,
        target,
    })
}

fn empty_query(doc: &Doc<'_>, pos: Pos, field: &str) -> Diagnostic {
    doc.diag(
        "KLT063",
        Severity::Error,
        pos,
        Some(field.to_string()),
        "the query is empty; the evaluator would have nothing to ask the provider".into(),
        Some("write the provider's query (for Prometheus a PromQL expression)".into()),
    )
}

/// Keptn's `checkValue`: the first character is the operator (`>` or `<`), the rest a Go
/// `strconv.ParseFloat` number that is not NaN. Hexadecimal floats, which Go also reads, are
/// refused here: no Keptn example writes one, and an error is safer than a guess.
pub fn parse_target(target: &str) -> Result<(char, f64), &'static str> {
    let mut chars = target.chars();
    let op = match chars.next() {
        Some(c @ ('<' | '>')) => c,
        Some(_) => return Err("it does not start with \"<\" or \">\""),
        None => return Err("it is empty"),
    };
    let number = chars.as_str();
    if number.starts_with('=') {
        return Err("Keptn has no \"<=\" or \">=\"");
    }
    let plain = number.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if plain.starts_with("0x") || number.contains('_') {
        return Err("the number is not a decimal number");
    }
    let value: f64 = number
        .parse()
        .map_err(|_| "what follows the operator is not a number")?;
    if value.is_nan() {
        return Err("NaN compares false with every value");
    }
    // Go reports a finite literal beyond f64 as a range error (Keptn fails the objective).
    if value.is_infinite() && !matches!(plain.as_str(), "inf" | "infinity") {
        return Err("the number is out of range");
    }
    Ok((op, value))
}

pub fn read_metric<'d>(doc: &'d Doc<'d>) -> Metric<'d> {
    let spec = doc.root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let (query, query_pos) = str_at(get("query"));
    let mut range = Vec::new();
    if let Some(r) = get("range") {
        for key in ["interval", "step", "aggregation"] {
            if let Some(v) = r.get(key).and_then(scalar_string) {
                range.push((key, serde_json::json!(v)));
            }
        }
        if let Some(NodeKind::Int(n)) = r.get("storedResults").map(|n| &n.kind) {
            range.push(("storedResults", serde_json::json!(n)));
        }
    }
    Metric {
        doc,
        provider: spanned(
            get("provider").and_then(|p| p.get("name")),
            "spec.provider.name".into(),
        ),
        query,
        query_pos: if query_pos == Pos::default() {
            spec.map_or(doc.root.pos, |s| s.pos)
        } else {
            query_pos
        },
        range,
    }
}

pub fn read_provider<'d>(doc: &'d Doc<'d>) -> Provider<'d> {
    let spec = doc.root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let typed = get("type").and_then(|n| Some((scalar_string(n)?, n.pos)));
    let (kind, kind_pos, kind_field) = match typed.filter(|(t, _)| !t.is_empty()) {
        Some((t, pos)) => (t, pos, "spec.type"),
        None => (
            doc.name.to_string(),
            doc.root
                .path(&["metadata", "name"])
                .map_or(doc.root.pos, |n| n.pos),
            "metadata.name",
        ),
    };
    let secret = get("secretKeyRef").and_then(|r| {
        let name = r.get("name").and_then(scalar_string)?;
        // Keptn's HasSecretDefined / HasSecretKeyDefined: blank means none.
        if name.trim().is_empty() {
            return None;
        }
        let key = r
            .get("key")
            .and_then(scalar_string)
            .filter(|k| !k.trim().is_empty());
        let optional = match r.get("optional").map(|n| &n.kind) {
            Some(NodeKind::Bool(b)) => Some(*b),
            _ => None,
        };
        Some((name, key, optional))
    });
    let secret_pos = get("secretKeyRef").map_or(doc.root.pos, |n| n.pos);
    Provider {
        doc,
        secret_pos,
        kind,
        kind_pos,
        kind_field,
        target_server: str_at(get("targetServer")).0,
        insecure: matches!(
            get("insecureSkipTlsVerify").map(|n| &n.kind),
            Some(NodeKind::Bool(true))
        ),
        secret,
    }
}

/// Where the evaluator finds a provider's Secret (the Job mounts it there).
pub fn secret_dir(provider: &str) -> String {
    format!("/var/run/klt-evaluate/providers/{provider}")
}

/// One objective, resolved to its query and provider.
#[derive(Debug, Clone)]
pub struct ResolvedObjective<'d> {
    pub name: String,
    pub query: String,
    pub range: &'d [(&'static str, serde_json::Value)],
    pub target: String,
    pub provider: &'d Provider<'d>,
}

/// What one evaluation use runs: the `KLT_EVALUATION` document and the provider Secrets.
#[derive(Debug, Clone)]
pub struct Resolved<'d> {
    pub definition: &'d EvaluationDefinition<'d>,
    pub namespace: String,
    pub objectives: Vec<ResolvedObjective<'d>>,
}

impl Resolved<'_> {
    /// `KLT_EVALUATION`: compact JSON, keys in the contract's order.
    pub fn to_json(&self) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("strings serialize");
        let d = self.definition;
        let mut out = format!(
            "{{\"name\":{},\"namespace\":{},\"retries\":{},\"retryInterval\":{},\"objectives\":[",
            s(&d.doc.name),
            s(&self.namespace),
            d.retries,
            s(&d.retry_interval)
        );
        for (i, o) in self.objectives.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"name\":{},\"query\":{}",
                s(&o.name),
                s(&o.query)
            ));
            if !o.range.is_empty() {
                let fields: Vec<String> = o
                    .range
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", s(k)))
                    .collect();
                out.push_str(&format!(",\"range\":{{{}}}", fields.join(",")));
            }
            out.push_str(&format!(",\"evaluationTarget\":{}", s(&o.target)));
            out.push_str(&provider_json(o.provider));
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// The distinct providers with a Secret, by name: `(provider, secret, optional)`.
    pub fn secrets(&self) -> BTreeMap<&str, (&str, Option<bool>)> {
        self.objectives
            .iter()
            .filter_map(|o| {
                let (secret, _, optional) = o.provider.secret.as_ref()?;
                Some((&*o.provider.doc.name, (secret.as_str(), *optional)))
            })
            .collect()
    }
}

fn provider_json(p: &Provider<'_>) -> String {
    let s = |v: &str| serde_json::to_string(v).expect("strings serialize");
    let mut out = format!(
        ",\"provider\":{{\"name\":{},\"type\":{},\"targetServer\":{},\"insecureSkipTlsVerify\":{}",
        s(&p.doc.name),
        s(&p.kind),
        s(&p.target_server),
        p.insecure
    );
    if let Some((_, key, _)) = &p.secret {
        out.push_str(&format!(",\"secretDir\":{}", s(&secret_dir(&p.doc.name))));
        if let Some(key) = key {
            out.push_str(&format!(",\"secretKey\":{}", s(key)));
        }
    }
    out.push('}');
    out
}

/// One place that asks for an evaluation: the list entry naming the definition.
pub struct Use<'a, 'd> {
    pub source: &'d Doc<'d>,
    pub name: &'a Spanned<String>,
    /// The evaluation's namespace (the app's or workload's), for lookups.
    pub namespace: &'a str,
}

impl<'d> Catalog<'d> {
    /// Resolves one use; `None` (with located errors) when anything it needs is missing or
    /// unusable.
    pub fn resolve(
        &'d self,
        u: &Use<'_, 'd>,
        fallback: Option<&str>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Resolved<'d>> {
        let find = |ns: &str| {
            self.definitions
                .get(ns, &u.name.value)
                .or_else(|| self.definitions.get(fallback?, &u.name.value))
        };
        let Some(def) = find(u.namespace) else {
            diags.push(self.missing_definition(u, fallback));
            return None;
        };
        let before = diags.iter().filter(|d| d.is_error()).count();
        let objectives: Vec<ResolvedObjective<'d>> = def
            .objectives
            .iter()
            .filter_map(|o| self.objective(def, o, u.namespace, fallback, diags))
            .collect();
        let failed = diags.iter().filter(|d| d.is_error()).count() > before;
        (!failed && objectives.len() == def.objectives.len()).then(|| Resolved {
            definition: def,
            namespace: u.namespace.to_string(),
            objectives,
        })
    }

    fn objective(
        &'d self,
        def: &'d EvaluationDefinition<'d>,
        o: &'d Objective,
        ns: &str,
        fallback: Option<&str>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<ResolvedObjective<'d>> {
        let (query, range, provider) = match &o.query {
            Some(q) => {
                let Some(source) = &def.source else {
                    return None; // the schema check reports the missing source
                };
                let provider = self.provider(def.doc, source, ns, fallback, diags)?;
                (q.value.clone(), &[][..], provider)
            }
            None => {
                let metric_ns = o.metric_namespace.as_deref().unwrap_or(ns);
                let metric = self
                    .metrics
                    .get(metric_ns, &o.name.value)
                    .or_else(|| self.metrics.get(fallback?, &o.name.value));
                let Some(metric) = metric else {
                    let names = || self.metrics.names_in(metric_ns);
                    let near = self.suggestions.closest(&o.name.value, names);
                    diags.push(not_found(def.doc, &o.name, "KeptnMetric", metric_ns, near));
                    return None;
                };
                if metric.query.trim().is_empty() {
                    diags.push(empty_query(metric.doc, metric.query_pos, "spec.query"));
                    return None;
                }
                let source = metric.provider.as_ref()?;
                let own_ns = metric.doc.effective_namespace(Some(metric_ns));
                let provider = self.provider(metric.doc, source, &own_ns, None, diags)?;
                (metric.query.clone(), &metric.range[..], provider)
            }
        };
        Some(ResolvedObjective {
            name: o.name.value.clone(),
            query,
            range,
            target: o.target.value.clone(),
            provider,
        })
    }

    fn provider(
        &'d self,
        doc: &Doc<'_>,
        name: &Spanned<String>,
        ns: &str,
        fallback: Option<&str>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<&'d Provider<'d>> {
        let found = self
            .providers
            .get(ns, &name.value)
            .or_else(|| self.providers.get(fallback?, &name.value));
        let Some(p) = found else {
            let near = self
                .suggestions
                .closest(&name.value, || self.providers.names_in(ns));
            diags.push(not_found(doc, name, "KeptnMetricsProvider", ns, near));
            return None;
        };
        if !IMPLEMENTED_PROVIDERS.contains(&p.kind.as_str()) {
            diags.push(p.doc.diag(
                "KLT064",
                Severity::Error,
                p.kind_pos,
                Some(p.kind_field.into()),
                format!("provider type {:?} is not implemented by klt-evaluate", p.kind),
                Some(Cow::from(format!(
                    "use a provider of type {} (an evaluation that cannot query its provider would never pass)",
                    IMPLEMENTED_PROVIDERS.join(", ")
                ))),
            ));
            return None;
        }
        if p.kind == "datadog" && p.secret.is_none() {
            // Keptn's getDDSecret: ErrSecretKeyRefNotDefined, on every attempt.
            diags.push(p.doc.diag(
                "KLT068",
                Severity::Error,
                p.kind_pos,
                Some(p.kind_field.into()),
                "a datadog provider needs a secretKeyRef: Datadog answers no query without its API and application keys".into(),
                Some("set spec.secretKeyRef.name to a Secret with the keys DD_CLIENT_API_KEY and DD_CLIENT_APP_KEY".into()),
            ));
            return None;
        }
        if p.kind == "dynatrace" && p.secret.is_none() {
            // Keptn's getDTSecret: the token is the value of the key the ref names (the schema
            // requires the key once there is a ref).
            diags.push(p.doc.diag(
                "KLT068",
                Severity::Error,
                p.kind_pos,
                Some(p.kind_field.into()),
                "a dynatrace provider needs a secretKeyRef: Dynatrace answers no query without its API token".into(),
                Some("set spec.secretKeyRef.name and spec.secretKeyRef.key to the Secret and key that hold the API token".into()),
            ));
            return None;
        }
        Some(p)
    }

    fn missing_definition(&self, u: &Use<'_, '_>, fallback: Option<&str>) -> Diagnostic {
        let names = || {
            let mut names = self.definitions.names_in(u.namespace);
            if let Some(f) = fallback.filter(|f| *f != u.namespace) {
                names.extend(self.definitions.names_in(f));
            }
            names
        };
        let near = self.suggestions.closest(&u.name.value, names);
        let kind = "KeptnEvaluationDefinition";
        let mut d = not_found(u.source, u.name, kind, u.namespace, near);
        d.code = "KLT060";
        d
    }
}

/// A reference to a missing object, with a did-you-mean (`near`) from the names of its
/// namespace.
fn not_found(
    doc: &Doc<'_>,
    wanted: &Spanned<String>,
    kind: &str,
    ns: &str,
    near: Option<&str>,
) -> Diagnostic {
    let place = if ns.is_empty() {
        "the destination namespace".to_string()
    } else {
        format!("namespace {ns:?}")
    };
    let help = match near {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => format!("add the {kind} to the rendered paths, or fix the name"),
    };
    doc.diag(
        "KLT061",
        Severity::Error,
        wanted.pos,
        Some(wanted.field.clone()),
        format!("{kind} {:?} not found in {place}", wanted.value),
        Some(Cow::from(help)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_keptns_check_value() {
        assert_eq!(parse_target(">1"), Ok(('>', 1.0)));
        assert_eq!(parse_target("<0.5"), Ok(('<', 0.5)));
        assert_eq!(parse_target("<-2e3"), Ok(('<', -2000.0)));
        assert_eq!(parse_target(">.5"), Ok(('>', 0.5)));
        assert!(parse_target(">inf").is_ok());
        for bad in [
            "", "1", "=1", ">=1", "<=0.5", "> 1", ">1 ", ">", ">abc", ">NaN", ">1e400", ">0x10",
            ">1_0",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }
}
