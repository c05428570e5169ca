//! Datadog's metrics query API as Keptn's metrics-operator calls it
//! (metrics-operator/controllers/common/providers/datadog/): `GET /api/v1/query` with `from`
//! and `to` in Unix seconds (now-`range.interval`, default 5m, to now), `interval` in
//! milliseconds when the range has a `step`, and `query`; the keys `DD_CLIENT_API_KEY` and
//! `DD_CLIENT_APP_KEY` of the provider's Secret go in the `DD-API-KEY` and
//! `DD-APPLICATION-KEY` headers. The answer's first series counts: without a step its value is
//! the average of its non-null points (`FormatFloat(v, 'g', 5)`); with a step every non-null
//! point (`%f`) goes through `range.aggregation`. Keptn reads the body whatever the HTTP status.

use std::time::Duration;

use serde::Deserialize;

use crate::aggregate;
use crate::call::{Call, Method};
use crate::gofloat;
use crate::prometheus::excerpt;
use crate::spec::Objective;

/// Keptn's datadog/common.go `apiKey`, `appKey`.
pub const API_KEY: &str = "DD_CLIENT_API_KEY";
pub const APP_KEY: &str = "DD_CLIENT_APP_KEY";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

pub fn call(objective: &Objective, now: Duration) -> Call {
    let range = objective.range.as_ref();
    let interval = range.map_or(DEFAULT_INTERVAL, |r| r.interval);
    let mut params = vec![
        ("from", now.saturating_sub(interval).as_secs().to_string()),
        ("to", now.as_secs().to_string()),
    ];
    if let Some(step) = range.and_then(|r| r.step) {
        params.push(("interval", step.as_millis().to_string()));
    }
    params.push(("query", objective.query.clone()));
    Call {
        method: Method::Get,
        path: "/api/v1/query",
        params,
        raw_query: None,
    }
}

#[derive(Deserialize)]
struct Answer {
    error: Option<String>,
    #[serde(default)]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Option<f64>>>,
}

pub fn value(objective: &Objective, status: u16, body: &str) -> Result<String, String> {
    let http = if (200..300).contains(&status) {
        String::new()
    } else {
        format!("HTTP {status}: ")
    };
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| format!("{http}not a Datadog query answer ({e}){}", excerpt(body)))?;
    if let Some(error) = answer.error {
        return Err(format!("{http}{error}"));
    }
    let series = answer.series.first().ok_or_else(|| {
        format!(
            "{http}no values in query result{}",
            if http.is_empty() {
                String::new()
            } else {
                excerpt(body)
            }
        )
    })?;
    if series.pointlist.is_empty() {
        return Err(format!("{http}no metric points in query result"));
    }
    let points: Vec<f64> = series
        .pointlist
        .iter()
        .filter_map(|p| p.get(1).copied().flatten())
        .collect();
    let aggregation = objective.range.as_ref().and_then(|r| r.aggregation);
    Ok(aggregate::points_value(&points, aggregation, |mean| {
        gofloat::format_g(mean, 5)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn objective(range: &str) -> Objective {
        let json = format!(
            r#"{{"name":"e","namespace":"n","objectives":[{{"name":"idle","query":"system.cpu.idle{{*}}",{range}"evaluationTarget":">1","provider":{{"name":"dd","type":"datadog","targetServer":"https://api.datadoghq.eu","secretDir":"/s"}}}}]}}"#
        );
        spec::parse(&json, "t", None).unwrap().objectives.remove(0)
    }

    const NOW: Duration = Duration::from_millis(1_677_822_706_900);

    #[test]
    fn calls() {
        let c = call(&objective(""), NOW);
        assert_eq!((c.method, c.path), (Method::Get, "/api/v1/query"));
        assert_eq!(
            c.params,
            vec![
                ("from", "1677822406".into()),
                ("to", "1677822706".into()),
                ("query", "system.cpu.idle{*}".into())
            ]
        );
        let c = call(
            &objective(r#""range":{"interval":"1h","step":"5m","aggregation":"max"},"#),
            NOW,
        );
        assert_eq!(c.params[0], ("from", "1677819106".into()));
        assert_eq!(c.params[2], ("interval", "300000".into()));
    }

    // Keptn's recorded answers (datadog_test.go ddPayload, ddErrorPayload).
    const PAYLOAD: &str = include_str!("../../tests/fixtures/evaluator/datadog/query-ok.json");
    const ERROR: &str = include_str!("../../tests/fixtures/evaluator/datadog/query-error.json");

    #[test]
    fn values() {
        assert_eq!(value(&objective(""), 200, PAYLOAD), Ok("89.116".into()));
        let agg = |a: &str| {
            value(
                &objective(&format!(
                    r#""range":{{"interval":"1h","step":"5m","aggregation":"{a}"}},"#
                )),
                200,
                PAYLOAD,
            )
        };
        assert_eq!(agg("max"), Ok("97.498585".into()));
        assert_eq!(agg("min"), Ok("69.670943".into()));
        assert_eq!(
            value(&objective(""), 403, ERROR),
            Err("HTTP 403: Token is missing required scope".into())
        );
        let empty = r#"{"series":[],"status":"ok"}"#;
        assert_eq!(
            value(&objective(""), 200, empty),
            Err("no values in query result".into())
        );
        let no_points = r#"{"series":[{"pointlist":[]}],"status":"ok"}"#;
        assert_eq!(
            value(&objective(""), 200, no_points),
            Err("no metric points in query result".into())
        );
        let nulls = r#"{"series":[{"pointlist":[[1,null],[2,4.0],[3,null]]}]}"#;
        assert_eq!(value(&objective(""), 200, nulls), Ok("4".into()));
    }
}
