//! Dynatrace's metrics API v2 as Keptn's metrics-operator calls it for `type: dynatrace`
//! (metrics-operator/controllers/common/providers/dynatrace/dynatrace.go; `dql` is another
//! API and not implemented): `GET <targetServer>/api/v2/metrics/query?<q>` where `<q>` is
//! `metricSelector=<query>`, plus `&from=now-<range.interval>` with a range and
//! `&resolution=<range.step>` with a step, split at `&` and `=` and escaped pair by pair as
//! Keptn's `urlEncodeQuery` does (so a query may carry its own `&from=now-2h`; a part
//! that is not exactly `key=value` is dropped). The token is the secretKeyRef key's value
//! (newlines trimmed), sent as `Authorization: Api-Token <token>`. The value is the average
//! of every non-null point of every series (`%f`; no points at all is 0, as in Keptn); with
//! a step every non-null point (`%f`) goes through `range.aggregation`. Keptn reads the body
//! whatever the HTTP status; an `error.message` in it is the error.

use std::time::Duration;

use serde::Deserialize;

use crate::aggregate;
use crate::call::{Call, Method};
use crate::gofloat;
use crate::prometheus::excerpt;
use crate::spec::Objective;

pub fn call(objective: &Objective, _now: Duration) -> Call {
    let mut raw = format!("metricSelector={}", objective.query);
    if let Some(range) = &objective.range {
        raw.push_str(&format!("&from=now-{}", range.interval_text));
        if let Some(step) = &range.step_text {
            raw.push_str(&format!("&resolution={step}"));
        }
    }
    // Keptn's normalizeAPIURL: targetServer + "/" + "api/" unless it already ends so.
    let api_in_target = objective
        .provider
        .target_server
        .trim_end_matches('/')
        .ends_with("/api");
    Call {
        method: Method::Get,
        path: if api_in_target {
            "/v2/metrics/query"
        } else {
            "/api/v2/metrics/query"
        },
        params: vec![],
        raw_query: Some(url_encode_query(&raw)),
    }
}

/// Keptn's `urlEncodeQuery`: `&`-separated parts that split into exactly two at `=`, the value
/// escaped with Go's `url.QueryEscape`.
fn url_encode_query(raw: &str) -> String {
    raw.split('&')
        .filter_map(
            |part| match part.split('=').collect::<Vec<_>>().as_slice() {
                [key, value] => Some(format!("{key}={}", query_escape(value))),
                _ => None,
            },
        )
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space is `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Vec<Series>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    data: Vec<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    values: Vec<Option<f64>>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
}

pub fn value(objective: &Objective, status: u16, body: &str) -> Result<String, String> {
    let http = if (200..300).contains(&status) {
        String::new()
    } else {
        format!("HTTP {status}: ")
    };
    let answer: Answer = serde_json::from_str(body).map_err(|e| {
        format!(
            "{http}not a Dynatrace metrics answer ({e}){}",
            excerpt(body)
        )
    })?;
    if let Some(error) = answer.error.filter(|e| !e.message.is_empty()) {
        return Err(format!("{http}provider api response: {}", error.message));
    }
    let points: Vec<f64> = answer
        .result
        .iter()
        .flat_map(|s| &s.data)
        .flat_map(|d| d.values.iter().flatten().copied())
        .collect();
    let aggregation = objective.range.as_ref().and_then(|r| r.aggregation);
    Ok(aggregate::points_value(
        &points,
        aggregation,
        gofloat::format_fixed6,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn objective(query: &str, range: &str, target: &str) -> Objective {
        let json = format!(
            r#"{{"name":"e","namespace":"n","objectives":[{{"name":"units","query":"{query}",{range}"evaluationTarget":">1","provider":{{"name":"dt","type":"dynatrace","targetServer":"{target}","secretDir":"/s","secretKey":"token"}}}}]}}"#
        );
        spec::parse(&json, "t", None).unwrap().objectives.remove(0)
    }

    const OK: &str = include_str!("../../tests/fixtures/evaluator/dynatrace/metrics-query-ok.json");
    const ERROR: &str =
        include_str!("../../tests/fixtures/evaluator/dynatrace/metrics-query-error.json");

    #[test]
    fn calls_as_keptn_builds_them() {
        let c = call(
            &objective("my-query", "", "https://abc.live.dynatrace.com"),
            Duration::ZERO,
        );
        assert_eq!(
            (c.method, c.path, c.raw_query.as_deref()),
            (
                Method::Get,
                "/api/v2/metrics/query",
                Some("metricSelector=my-query")
            )
        );
        let c = call(
            &objective(
                "my-query&from=now-2h",
                "",
                "https://abc.live.dynatrace.com/api/",
            ),
            Duration::ZERO,
        );
        assert_eq!(
            (c.path, c.raw_query.as_deref()),
            (
                "/v2/metrics/query",
                Some("metricSelector=my-query&from=now-2h")
            )
        );
        let c = call(
            &objective(
                "builtin:host.cpu.usage:avg",
                r#""range":{"interval":"5m","step":"1m","aggregation":"max"},"#,
                "https://x",
            ),
            Duration::ZERO,
        );
        assert_eq!(
            c.raw_query.as_deref(),
            Some("metricSelector=builtin%3Ahost.cpu.usage%3Aavg&from=now-5m&resolution=1m")
        );
        assert_eq!(query_escape("a b/(c)"), "a+b%2F%28c%29");
        assert_eq!(
            url_encode_query("metricSelector=a=b&from=now-1h"),
            "from=now-1h"
        );
    }

    #[test]
    fn values_from_keptns_recorded_answers() {
        assert_eq!(
            value(&objective("q", "", "https://x"), 200, OK),
            Ok("50.000000".into())
        );
        let stepped = objective(
            "q",
            r#""range":{"interval":"2h","step":"1m","aggregation":"max"},"#,
            "https://x",
        );
        assert_eq!(value(&stepped, 200, OK), Ok("50".into()));
        assert_eq!(
            value(&objective("q", "", "https://x"), 403, ERROR),
            Err("HTTP 403: provider api response: Token is missing required scope. Use one of: metrics.read (Read metrics)".into())
        );
        assert_eq!(
            value(
                &objective("q", "", "https://x"),
                200,
                r#"{"totalCount":0,"result":[]}"#
            ),
            Ok("0.000000".into())
        );
    }
}
