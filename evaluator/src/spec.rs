//! The evaluation a Job carries (env `KLT_EVALUATION`, the contract in issue 12): its JSON and
//! the checks that turn it into an [`Evaluation`] or a configuration error (exit 2, no attempt).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::aggregate::{self, Aggregation};
use crate::duration;
use crate::target::Target;

/// Keptn's CRD defaults (KeptnEvaluation `retries: 10`, `retryInterval: 5s`, KeptnMetric
/// `range.interval: 5m`).
const DEFAULT_ATTEMPTS: u32 = 10;
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RANGE_INTERVAL: Duration = Duration::from_secs(300);

/// Provider types Keptn's metrics-operator knows (providers/common.go), and which of them
/// this evaluator implements.
pub const KEPTN_TYPES: [&str; 7] = [
    "prometheus",
    "thanos",
    "cortex",
    "datadog",
    "dynatrace",
    "dql",
    "elastic",
];
pub const IMPLEMENTED_TYPES: [&str; 5] = ["prometheus", "thanos", "cortex", "datadog", "dynatrace"];

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub name: String,
    pub namespace: String,
    /// Keptn's `retries` is the number of attempts in all (`RetryCount >= Retries` ends it).
    pub attempts: u32,
    pub retry_interval: Duration,
    pub objectives: Vec<Objective>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub name: String,
    pub query: String,
    pub range: Option<Range>,
    pub target: Target,
    pub provider: Provider,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub interval: Duration,
    pub step: Option<Duration>,
    /// `interval` and `step` as written: Dynatrace gets them as text (`from=now-<interval>`).
    pub interval_text: String,
    pub step_text: Option<String>,
    /// Set exactly when `step` is (checked).
    pub aggregation: Option<Aggregation>,
}

/// The query API a provider type speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// prometheus, thanos, cortex.
    Prometheus,
    Datadog,
    /// dynatrace: the metrics API v2 (not `dql`).
    Dynatrace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    pub api: Api,
    /// As written (Keptn compares it case-insensitively).
    pub kind: String,
    pub target_server: String,
    pub insecure_skip_tls_verify: bool,
    pub secret_dir: Option<PathBuf>,
    /// The secretKeyRef's key (Dynatrace reads the token from it; the others ignore it).
    pub secret_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvaluation {
    name: String,
    namespace: String,
    retries: Option<i64>,
    retry_interval: Option<String>,
    objectives: Vec<RawObjective>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawObjective {
    name: String,
    query: String,
    range: Option<RawRange>,
    evaluation_target: String,
    provider: RawProvider,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRange {
    interval: Option<String>,
    step: Option<String>,
    aggregation: Option<String>,
    /// Only how many past results a KeptnMetric keeps in its status; no effect on the value.
    #[allow(dead_code)]
    stored_results: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProvider {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    target_server: String,
    insecure_skip_tls_verify: Option<bool>,
    secret_dir: Option<String>,
    /// Keptn's Prometheus and Datadog providers ignore the key and read fixed ones.
    secret_key: Option<String>,
}

/// Parses and checks the JSON; `source` names where it came from (`KLT_EVALUATION`, a file).
/// `provider_url` replaces every objective's targetServer (`--provider-url`).
pub fn parse(
    json: &str,
    source: &str,
    provider_url: Option<&str>,
) -> Result<Evaluation, ConfigError> {
    let raw: RawEvaluation = serde_json::from_str(json)
        .map_err(|e| ConfigError(format!("{source}: not a valid evaluation: {e}")))?;
    let at = |what: String| ConfigError(format!("{source}: evaluation {}: {what}", raw.name));
    if raw.objectives.is_empty() {
        return Err(at("no objectives".into()));
    }
    let attempts = match raw.retries {
        None | Some(0) => DEFAULT_ATTEMPTS,
        Some(n) if n > 0 => {
            u32::try_from(n).map_err(|_| at(format!("retries {n} is too large")))?
        }
        Some(n) => return Err(at(format!("retries {n} is negative"))),
    };
    let retry_interval = match &raw.retry_interval {
        None => DEFAULT_RETRY_INTERVAL,
        Some(text) => duration::parse(text).map_err(|e| at(format!("retryInterval: {e}")))?,
    };
    let mut objectives = Vec::with_capacity(raw.objectives.len());
    for (i, o) in raw.objectives.iter().enumerate() {
        let objective = objective(o, provider_url)
            .map_err(|e| at(format!("objectives[{i}] ({}): {e}", o.name)))?;
        objectives.push(objective);
    }
    Ok(Evaluation {
        name: raw.name,
        namespace: raw.namespace,
        attempts,
        retry_interval,
        objectives,
    })
}

fn objective(o: &RawObjective, provider_url: Option<&str>) -> Result<Objective, String> {
    if o.query.trim().is_empty() {
        return Err("query is empty".into());
    }
    let target = Target::parse(&o.evaluation_target).map_err(|e| e.to_string())?;
    let range = o.range.as_ref().map(range).transpose()?;
    Ok(Objective {
        name: o.name.clone(),
        query: o.query.clone(),
        range,
        target,
        provider: provider(&o.provider, provider_url)?,
    })
}

fn range(r: &RawRange) -> Result<Range, String> {
    let interval = match &r.interval {
        None => DEFAULT_RANGE_INTERVAL,
        Some(text) => duration::parse(text).map_err(|e| format!("range.interval: {e}"))?,
    };
    if interval.is_zero() {
        return Err("range.interval is 0".into());
    }
    let step = match &r.step {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => Some(duration::parse(text).map_err(|e| format!("range.step: {e}"))?),
    };
    if step.is_some_and(|s| s.is_zero()) {
        return Err("range.step is 0".into());
    }
    let aggregation = match (&step, r.aggregation.as_deref()) {
        (_, Some(name)) if Aggregation::parse(name).is_none() => {
            return Err(format!(
                "range.aggregation {name:?} is not one of {}",
                aggregate::NAMES
            ));
        }
        // Keptn's metrics-operator reports 0 for a stepped range without an aggregation.
        (Some(_), None) => {
            return Err(format!(
                "range.step needs range.aggregation (one of {})",
                aggregate::NAMES
            ));
        }
        (Some(_), Some(name)) => Aggregation::parse(name),
        // Without a step Keptn ignores the aggregation: one point is taken.
        (None, _) => None,
    };
    Ok(Range {
        interval,
        step,
        interval_text: r.interval.clone().unwrap_or_else(|| "5m".into()),
        step_text: r.step.clone().filter(|s| !s.is_empty()),
        aggregation,
    })
}

fn provider(p: &RawProvider, provider_url: Option<&str>) -> Result<Provider, String> {
    let kind = p.kind.to_ascii_lowercase();
    if !IMPLEMENTED_TYPES.contains(&kind.as_str()) {
        let known = if KEPTN_TYPES.contains(&kind.as_str()) {
            "a Keptn provider type klt-evaluate does not implement"
        } else {
            "not a Keptn provider type"
        };
        return Err(format!(
            "provider {} has type {:?}, {known} (implemented: {})",
            p.name,
            p.kind,
            IMPLEMENTED_TYPES.join(", ")
        ));
    }
    let target_server = provider_url.unwrap_or(&p.target_server).to_string();
    if !(target_server.starts_with("http://") || target_server.starts_with("https://")) {
        return Err(format!(
            "provider {} targetServer {target_server:?} is not an http:// or https:// URL",
            p.name
        ));
    }
    let api = match kind.as_str() {
        "datadog" => Api::Datadog,
        "dynatrace" => Api::Dynatrace,
        _ => Api::Prometheus,
    };
    // Keptn fails every attempt without the Secret ("the SecretKeyRef property with the
    // DataDog API Key is missing", "… with the Dynatrace token is missing"); nothing a retry
    // can fix.
    if api == Api::Datadog && p.secret_dir.is_none() {
        return Err(format!(
            "provider {} has type datadog but no secretKeyRef (Keptn reads the keys DD_CLIENT_API_KEY and DD_CLIENT_APP_KEY from it)",
            p.name
        ));
    }
    if api == Api::Dynatrace && (p.secret_dir.is_none() || p.secret_key.is_none()) {
        return Err(format!(
            "provider {} has type dynatrace but no secretKeyRef with a key (Keptn reads the API token from that key)",
            p.name
        ));
    }
    Ok(Provider {
        name: p.name.clone(),
        api,
        kind: p.kind.clone(),
        target_server,
        insecure_skip_tls_verify: p.insecure_skip_tls_verify.unwrap_or(false),
        secret_dir: p.secret_dir.as_ref().map(PathBuf::from),
        secret_key: p.secret_key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"name":"pre-check","namespace":"shop","retries":3,"retryInterval":"2s","objectives":[{"name":"cpu-free","query":"sum(x)","range":{"interval":"10m","step":"1m","aggregation":"max","storedResults":2},"evaluationTarget":">1","provider":{"name":"prom","type":"Prometheus","targetServer":"http://prometheus:9090","insecureSkipTlsVerify":false,"secretDir":"/var/run/klt-evaluate/providers/prom","secretKey":"creds"}}]}"#;

    fn err(json: &str) -> String {
        parse(json, "KLT_EVALUATION", None).unwrap_err().0
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(FULL.contains(replace), "{replace}");
        FULL.replace(replace, by)
    }

    #[test]
    fn the_contract_form() {
        let e = parse(FULL, "KLT_EVALUATION", None).unwrap();
        assert_eq!(
            (e.name.as_str(), e.namespace.as_str(), e.attempts),
            ("pre-check", "shop", 3)
        );
        assert_eq!(e.retry_interval, Duration::from_secs(2));
        let o = &e.objectives[0];
        assert_eq!(o.target.text, ">1");
        assert_eq!(
            o.range,
            Some(Range {
                interval: Duration::from_secs(600),
                step: Some(Duration::from_secs(60)),
                interval_text: "10m".into(),
                step_text: Some("1m".into()),
                aggregation: Some(Aggregation::Max)
            })
        );
        assert_eq!(
            o.provider.secret_dir,
            Some(PathBuf::from("/var/run/klt-evaluate/providers/prom"))
        );
        let local = parse(FULL, "x", Some("http://127.0.0.1:9")).unwrap();
        assert_eq!(
            local.objectives[0].provider.target_server,
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn keptn_defaults() {
        let minimal = r#"{"name":"e","namespace":"n","objectives":[{"name":"m","query":"up","range":{},"evaluationTarget":"<2","provider":{"name":"p","type":"thanos","targetServer":"https://t"}}]}"#;
        let e = parse(minimal, "x", None).unwrap();
        assert_eq!((e.attempts, e.retry_interval), (10, Duration::from_secs(5)));
        assert_eq!(
            e.objectives[0].range.as_ref().unwrap().interval,
            Duration::from_secs(300)
        );
        // retries: 0 is omitted by Keptn's Go struct (omitempty) and defaulted to 10 by the CRD.
        assert_eq!(
            parse(&with("\"retries\":3", "\"retries\":0"), "x", None)
                .unwrap()
                .attempts,
            10
        );
    }

    #[test]
    fn configuration_errors() {
        assert!(err("{").starts_with("KLT_EVALUATION: not a valid evaluation: EOF"));
        assert_eq!(
            err(&with(">1", "<=0.5")),
            "KLT_EVALUATION: evaluation pre-check: objectives[0] (cpu-free): evaluationTarget \"<=0.5\": the operator must be `>` or `<` (Keptn supports no other; e.g. >1, <0.5)"
        );
        assert_eq!(
            err(&with("\"type\":\"Prometheus\"", "\"type\":\"elastic\"")),
            "KLT_EVALUATION: evaluation pre-check: objectives[0] (cpu-free): provider prom has type \"elastic\", a Keptn provider type klt-evaluate does not implement (implemented: prometheus, thanos, cortex, datadog, dynatrace)"
        );
        assert!(
            err(&with("\"type\":\"Prometheus\"", "\"type\":\"graphite\""))
                .contains("not a Keptn provider type")
        );
        assert!(err(&with("sum(x)", " ")).ends_with("(cpu-free): query is empty"));
        assert!(err(&with("\"max\"", "\"mean\"")).ends_with(
            "range.aggregation \"mean\" is not one of p90, p95, p99, max, min, avg, median"
        ));
        assert!(err(&with(",\"aggregation\":\"max\"", "")).ends_with(
            "range.step needs range.aggregation (one of p90, p95, p99, max, min, avg, median)"
        ));
        assert!(
            err(&with("\"2s\"", "\"2\""))
                .contains("retryInterval: invalid duration \"2\": missing unit")
        );
        assert!(err(&with("\"retries\":3", "\"retries\":-1")).ends_with("retries -1 is negative"));
        assert!(err(&with("\"retries\":3", "\"retry\":3")).contains("unknown field `retry`"));
        assert!(
            err(&with("http://prometheus:9090", "prometheus:9090"))
                .contains("is not an http:// or https:// URL")
        );
    }
}
