//! The attempt loop of Keptn's evaluation controller (keptnevaluation/controller.go), over an
//! injected fetch function and sleeper: at most `attempts` attempts (Keptn's `retries` counts
//! attempts: `RetryCount >= Retries` ends it), `retryInterval` between two attempts, every
//! objective not yet passed fetched and compared each attempt, an objective that passed stays
//! passed, a fetch error fails the objective for that attempt. Prints one line per objective
//! fetched per attempt and returns the verdict.

use std::time::Duration;

use crate::gofloat;
use crate::spec::{Evaluation, Objective};

/// What the last attempt left an objective with.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending,
    Passed(String),
    Missed(String),
    NoValue(String),
}

impl State {
    fn passed(&self) -> bool {
        matches!(self, State::Passed(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last line: `evaluation <name> passed: …` or `evaluation <name> failed: …`.
    pub summary: String,
}

/// `fetch` returns the metric value as Keptn stores it (a string) or why there is none;
/// `out` receives each attempt line.
pub fn run(
    evaluation: &Evaluation,
    fetch: &mut dyn FnMut(&Objective) -> Result<String, String>,
    sleep: &mut dyn FnMut(Duration),
    out: &mut dyn FnMut(String),
) -> Verdict {
    let total = evaluation.attempts;
    let mut states = vec![State::Pending; evaluation.objectives.len()];
    for attempt in 1..=total {
        if attempt > 1 {
            sleep(evaluation.retry_interval);
        }
        for (objective, state) in evaluation.objectives.iter().zip(states.iter_mut()) {
            if state.passed() {
                continue;
            }
            *state = check(objective, fetch(objective));
            out(line(attempt, total, objective, state));
        }
        if states.iter().all(State::passed) {
            let n = states.len();
            let summary = format!(
                "evaluation {} passed: {n} of {n} objective{} met (attempt {attempt} of {total})",
                evaluation.name,
                if n == 1 { "" } else { "s" }
            );
            return Verdict {
                passed: true,
                attempts: attempt,
                summary,
            };
        }
    }
    let failures: Vec<String> = evaluation
        .objectives
        .iter()
        .zip(&states)
        .filter_map(|(o, s)| failure(o, s))
        .collect();
    let summary = format!(
        "evaluation {} failed: {} ({total} of {total} attempts)",
        evaluation.name,
        failures.join("; ")
    );
    Verdict {
        passed: false,
        attempts: total,
        summary,
    }
}

/// Keptn's `checkValue`: the value parsed as a float, compared with the target.
fn check(objective: &Objective, fetched: Result<String, String>) -> State {
    match fetched {
        Err(why) => State::NoValue(why),
        Ok(value) => match gofloat::parse(&value) {
            Some(v) if objective.target.met_by(v) => State::Passed(value),
            Some(_) => State::Missed(value),
            None => State::NoValue(format!("value {value:?} is not a number")),
        },
    }
}

fn line(attempt: u32, total: u32, o: &Objective, state: &State) -> String {
    let head = format!("attempt {attempt}/{total}: {}", o.name);
    let target = &o.target;
    match state {
        State::Passed(value) => format!("{head} = {value}, target {target}: pass"),
        State::Missed(value) => format!("{head} = {value}, target {target}: fail"),
        State::NoValue(why) => format!(
            "{head}: no value from {}: {why}, target {target}: fail",
            source(o)
        ),
        State::Pending => format!("{head}: not fetched"),
    }
}

fn failure(o: &Objective, state: &State) -> Option<String> {
    match state {
        State::Passed(_) => None,
        State::Missed(value) => Some(format!(
            "objective {} value {value} does not meet {}",
            o.name, o.target
        )),
        State::NoValue(why) => Some(format!(
            "objective {} has no value from {}: {why}",
            o.name,
            source(o)
        )),
        State::Pending => Some(format!("objective {} was not fetched", o.name)),
    }
}

fn source(o: &Objective) -> String {
    format!(
        "provider {} ({})",
        o.provider.name, o.provider.target_server
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn evaluation(retries: u32, targets: &[(&str, &str)]) -> Evaluation {
        let objectives: Vec<String> = targets
            .iter()
            .map(|(name, target)| {
                format!(r#"{{"name":"{name}","query":"q_{name}","evaluationTarget":"{target}","provider":{{"name":"prom","type":"prometheus","targetServer":"http://prom:9090"}}}}"#)
            })
            .collect();
        let json = format!(
            r#"{{"name":"pre-check","namespace":"n","retries":{retries},"retryInterval":"3s","objectives":[{}]}}"#,
            objectives.join(",")
        );
        spec::parse(&json, "t", None).unwrap()
    }

    /// Runs with scripted values: `values[name]` gives the answer per call of that objective.
    fn run_scripted(
        e: &Evaluation,
        script: &[(&str, &[Result<&str, &str>])],
    ) -> (Verdict, Vec<String>, Vec<Duration>) {
        let mut calls: std::collections::HashMap<String, usize> = Default::default();
        let mut fetch = |o: &Objective| {
            let n = calls.entry(o.name.clone()).or_default();
            let answers = script.iter().find(|(name, _)| *name == o.name).unwrap().1;
            let answer = answers[(*n).min(answers.len() - 1)];
            *n += 1;
            answer.map(str::to_string).map_err(str::to_string)
        };
        let mut slept = vec![];
        let mut lines = vec![];
        let verdict = run(e, &mut fetch, &mut |d| slept.push(d), &mut |l| {
            lines.push(l)
        });
        (verdict, lines, slept)
    }

    #[test]
    fn passes_first_time() {
        let e = evaluation(3, &[("cpu-free", ">1")]);
        let (v, lines, slept) = run_scripted(&e, &[("cpu-free", &[Ok("2.5")])]);
        assert_eq!(lines, ["attempt 1/3: cpu-free = 2.5, target >1: pass"]);
        assert!(slept.is_empty());
        assert_eq!(
            v,
            Verdict {
                passed: true,
                attempts: 1,
                summary: "evaluation pre-check passed: 1 of 1 objective met (attempt 1 of 3)"
                    .into()
            }
        );
    }

    #[test]
    fn fails_twice_then_passes_and_a_passed_objective_is_not_fetched_again() {
        let e = evaluation(5, &[("ready", ">0"), ("errors", "<0.01")]);
        let (v, lines, slept) = run_scripted(
            &e,
            &[
                ("ready", &[Ok("0"), Ok("0"), Ok("1")]),
                ("errors", &[Ok("0.001"), Ok("0.5")]),
            ],
        );
        assert_eq!(
            lines,
            [
                "attempt 1/5: ready = 0, target >0: fail",
                "attempt 1/5: errors = 0.001, target <0.01: pass",
                "attempt 2/5: ready = 0, target >0: fail",
                "attempt 3/5: ready = 1, target >0: pass",
            ]
        );
        assert_eq!(slept, [Duration::from_secs(3); 2]);
        assert!(v.passed && v.attempts == 3, "{v:?}");
        assert_eq!(
            v.summary,
            "evaluation pre-check passed: 2 of 2 objectives met (attempt 3 of 5)"
        );
    }

    #[test]
    fn fails_after_the_last_attempt_naming_each_failing_objective() {
        let e = evaluation(3, &[("cpu-free", ">2"), ("up", ">0"), ("latency", "<1")]);
        let (v, lines, slept) = run_scripted(
            &e,
            &[
                ("cpu-free", &[Ok("1.2")]),
                ("up", &[Err("connection refused")]),
                ("latency", &[Ok("0.2")]),
            ],
        );
        assert_eq!(lines.len(), 3 + 2 + 2);
        assert_eq!(
            lines[1],
            "attempt 1/3: up: no value from provider prom (http://prom:9090): connection refused, target >0: fail"
        );
        assert_eq!(slept.len(), 2, "no sleep after the last attempt");
        assert_eq!(
            v,
            Verdict {
                passed: false,
                attempts: 3,
                summary: "evaluation pre-check failed: objective cpu-free value 1.2 does not meet >2; objective up has no value from provider prom (http://prom:9090): connection refused (3 of 3 attempts)".into()
            }
        );
    }

    #[test]
    fn nan_never_passes() {
        let e = evaluation(1, &[("m", "<5")]);
        let (v, lines, _) = run_scripted(&e, &[("m", &[Ok("NaN")])]);
        assert_eq!(lines, ["attempt 1/1: m = NaN, target <5: fail"]);
        assert_eq!(
            v.summary,
            "evaluation pre-check failed: objective m value NaN does not meet <5 (1 of 1 attempts)"
        );
    }
}
