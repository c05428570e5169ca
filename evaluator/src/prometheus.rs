//! The Prometheus HTTP query API as Keptn's metrics-operator calls it for prometheus, thanos
//! and cortex providers (metrics-operator/controllers/common/providers/prometheus/, through
//! client_golang): which call, its parameters, and how the value is taken from the answer.
//! Pure: the HTTP itself is in `http`.
//!
//! - no `range`: instant query `/api/v1/query` (`query`, `time` = now); the result must be a
//!   vector of exactly one sample, whose value is the metric's value.
//! - `range` without `step`: `/api/v1/query_range` from now-interval to now with
//!   `step` = interval; the value is the first point of the one series (Prometheus returns the
//!   points at start and end; Keptn takes `Values[0]`, the one at now-interval).
//! - `range` with `step`: the same call with that step; every point of the one series goes
//!   through `range.aggregation`.

use std::time::Duration;

use serde::Deserialize;

use crate::call::{Call, Method};
use crate::gofloat;
use crate::spec::Objective;

/// `now` is Unix time. Times are sent as seconds with millisecond precision.
pub fn call(objective: &Objective, now: Duration) -> Call {
    let query = ("query", objective.query.clone());
    match &objective.range {
        None => Call {
            method: Method::PostForm,
            path: "/api/v1/query",
            params: vec![query, ("time", seconds(now))],
            raw_query: None,
        },
        Some(range) => {
            let start = now.saturating_sub(range.interval);
            let step = range.step.unwrap_or(range.interval);
            Call {
                method: Method::PostForm,
                path: "/api/v1/query_range",
                params: vec![
                    query,
                    ("start", seconds(start)),
                    ("end", seconds(now)),
                    ("step", gofloat::format_f(step.as_secs_f64())),
                ],
                raw_query: None,
            }
        }
    }
}

fn seconds(t: Duration) -> String {
    format!("{}.{:03}", t.as_secs(), t.subsec_millis())
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    Scalar(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

#[derive(Deserialize)]
struct Series {
    values: Vec<(f64, String)>,
}

/// The metric value from an HTTP answer (status, body), formatted as Keptn stores it, or why
/// there is none (a sentence; no secrets can be in it: the body is the server's).
pub fn value(objective: &Objective, status: u16, body: &str) -> Result<String, String> {
    // client_golang reads the JSON error of 400 and 422 answers; other non-2xx are bare.
    if !(200..300).contains(&status) && status != 400 && status != 422 {
        let class = match status / 100 {
            4 => "client error",
            5 => "server error",
            _ => "bad response code",
        };
        return Err(format!("HTTP {status} ({class}){}", excerpt(body)));
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| {
        format!(
            "HTTP {status}: not a Prometheus API answer ({e}){}",
            excerpt(body)
        )
    })?;
    if answer.status != "success" {
        return Err(format!(
            "{}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("(no message)")
        ));
    }
    let data = answer.data.ok_or("answer has no data")?;
    match (&objective.range, data) {
        (None, Data::Vector(samples)) => one(&samples).and_then(|s| sample_value(&s.value.1)),
        (Some(range), Data::Matrix(series)) => {
            let points = &one(&series)?.values;
            let first = points.first().ok_or("no values in query result")?;
            match range.aggregation {
                None => sample_value(&first.1),
                Some(aggregation) => {
                    let values = points
                        .iter()
                        .map(|p| number(&p.1))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(gofloat::format_v(aggregation.apply(&values)))
                }
            }
        }
        (None, other) => Err(format!(
            "could not cast result: the query returned a {}, Keptn needs an instant vector (e.g. wrap a scalar in vector())",
            kind(&other)
        )),
        (Some(_), other) => Err(format!(
            "could not cast result: a range query returned a {}",
            kind(&other)
        )),
    }
}

fn one<T>(items: &[T]) -> Result<&T, String> {
    match items {
        [] => Err("no values in query result (no series matched)".into()),
        [item] => Ok(item),
        _ => Err(format!(
            "too many values in query result ({} series; the query must return exactly one)",
            items.len()
        )),
    }
}

fn kind(data: &Data) -> &'static str {
    match data {
        Data::Vector(_) => "vector",
        Data::Matrix(_) => "matrix",
        Data::Scalar(_) => "scalar",
        Data::String(_) => "string",
    }
}

fn number(text: &str) -> Result<f64, String> {
    gofloat::parse(text).ok_or_else(|| format!("sample value {text:?} is not a number"))
}

/// `model.SampleValue.String()`: parsed, then printed back Go's way.
fn sample_value(text: &str) -> Result<String, String> {
    number(text).map(gofloat::format_f)
}

pub fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let cut: String = trimmed.chars().take(200).collect();
    let more = if cut.len() < trimmed.len() { "…" } else { "" };
    format!(": {}{more}", cut.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn objective(range: &str) -> Objective {
        let json = format!(
            r#"{{"name":"e","namespace":"n","objectives":[{{"name":"m","query":"up{{job=\"x\"}}",{range}"evaluationTarget":">1","provider":{{"name":"p","type":"prometheus","targetServer":"http://p"}}}}]}}"#
        );
        spec::parse(&json, "t", None).unwrap().objectives.remove(0)
    }

    const NOW: Duration = Duration::from_millis(1_764_640_800_250);

    #[test]
    fn calls() {
        let instant = call(&objective(""), NOW);
        assert_eq!(instant.path, "/api/v1/query");
        assert_eq!(
            instant.params,
            vec![
                ("query", "up{job=\"x\"}".into()),
                ("time", "1764640800.250".into())
            ]
        );
        let ranged = call(&objective(r#""range":{"interval":"10m"},"#), NOW);
        assert_eq!(ranged.path, "/api/v1/query_range");
        assert_eq!(
            &ranged.params[1..],
            &[
                ("start", "1764640200.250".into()),
                ("end", "1764640800.250".into()),
                ("step", "600".into())
            ]
        );
        let stepped = call(
            &objective(r#""range":{"interval":"10m","step":"90s","aggregation":"avg"},"#),
            NOW,
        );
        assert_eq!(stepped.params[3], ("step", "90".into()));
    }

    #[test]
    fn instant_values() {
        let o = objective("");
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1764640800.25,"1.50"]}]}}"#;
        assert_eq!(value(&o, 200, one), Ok("1.5".into()));
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            value(&o, 200, none),
            Err("no values in query result (no series matched)".into())
        );
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#;
        assert_eq!(
            value(&o, 200, two),
            Err(
                "too many values in query result (2 series; the query must return exactly one)"
                    .into()
            )
        );
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert!(
            value(&o, 200, scalar)
                .unwrap_err()
                .starts_with("could not cast result: the query returned a scalar")
        );
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(value(&o, 200, nan), Ok("NaN".into()));
    }

    #[test]
    fn range_values() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"3"],[61,"9"],[121,"2"]]}]}}"#;
        assert_eq!(
            value(&objective(r#""range":{"interval":"2m"},"#), 200, matrix),
            Ok("3".into())
        );
        let agg = |a: &str| {
            value(
                &objective(&format!(
                    r#""range":{{"interval":"2m","step":"1m","aggregation":"{a}"}},"#
                )),
                200,
                matrix,
            )
        };
        assert_eq!(agg("max"), Ok("9".into()));
        assert_eq!(agg("min"), Ok("2".into()));
        assert_eq!(agg("avg"), Ok("4.666666666666667".into()));
        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            agg("max").is_ok()
                && value(&objective(r#""range":{},"#), 200, empty)
                    .unwrap_err()
                    .starts_with("no values")
        );
    }

    #[test]
    fn errors() {
        let o = objective("");
        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}"#;
        assert_eq!(
            value(&o, 400, bad),
            Err("bad_data: 1:4: parse error: unexpected end of input".into())
        );
        assert_eq!(
            value(&o, 401, "Unauthorized\n"),
            Err("HTTP 401 (client error): Unauthorized".into())
        );
        assert_eq!(value(&o, 503, ""), Err("HTTP 503 (server error)".into()));
        assert!(
            value(&o, 200, "<html>")
                .unwrap_err()
                .starts_with("HTTP 200: not a Prometheus API answer")
        );
    }
}
