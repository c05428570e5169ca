//! Glue between an objective and its provider: the credentials from `secretDir` as Keptn's
//! providers read them (Prometheus: keys `user` and `password`, sent as HTTP basic auth;
//! Datadog: `DD_CLIENT_API_KEY` and `DD_CLIENT_APP_KEY`, sent as `DD-API-KEY` and
//! `DD-APPLICATION-KEY`; Dynatrace: the ref's key, sent as `Authorization: Api-Token`), one HTTP client per provider, and the fetch function the attempt
//! loop calls.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::http::Client;
use crate::spec::{Api, ConfigError, Evaluation, Objective, Provider};
use crate::{datadog, dynatrace, prometheus};

/// Keptn: prometheus/common.go `secretKeyUserName`, `secretKeyPassword`.
const USER_KEY: &str = "user";
const PASSWORD_KEY: &str = "password";

/// Clients by provider name, built once before the first attempt: a missing credential is a
/// configuration error (exit 2), not something a retry could fix.
pub struct Providers {
    clients: BTreeMap<String, Client>,
}

impl Providers {
    pub fn new(evaluation: &Evaluation) -> Result<Providers, ConfigError> {
        let mut clients = BTreeMap::new();
        for o in &evaluation.objectives {
            let p = &o.provider;
            if clients.contains_key(&p.name) {
                continue;
            }
            let headers = match p.api {
                Api::Prometheus => basic_auth(p)?
                    .map(|a| ("Authorization", a))
                    .into_iter()
                    .collect(),
                Api::Datadog => datadog_keys(p)?,
                Api::Dynatrace => dynatrace_token(p)?,
            };
            let client = Client::new(&p.target_server, p.insecure_skip_tls_verify, headers);
            clients.insert(p.name.clone(), client);
        }
        Ok(Providers { clients })
    }

    /// Queries the objective's provider now.
    pub fn fetch(&self, objective: &Objective) -> Result<String, String> {
        let client = &self.clients[&objective.provider.name];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match objective.provider.api {
            Api::Prometheus => {
                let (status, body) = client.send(&prometheus::call(objective, now))?;
                prometheus::value(objective, status, &body)
            }
            Api::Datadog => {
                let (status, body) = client.send(&datadog::call(objective, now))?;
                datadog::value(objective, status, &body)
            }
            Api::Dynatrace => {
                let (status, body) = client.send(&dynatrace::call(objective, now))?;
                dynatrace::value(objective, status, &body)
            }
        }
    }
}

fn basic_auth(p: &Provider) -> Result<Option<String>, ConfigError> {
    let Some(dir) = &p.secret_dir else {
        return Ok(None);
    };
    let user = secret_file(p, dir, USER_KEY, &[USER_KEY, PASSWORD_KEY])?;
    let password = secret_file(p, dir, PASSWORD_KEY, &[USER_KEY, PASSWORD_KEY])?;
    let mut pair = user;
    pair.push(b':');
    pair.extend_from_slice(&password);
    Ok(Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )))
}

fn datadog_keys(p: &Provider) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let dir = p
        .secret_dir
        .as_deref()
        .expect("spec checks datadog has a secretDir");
    let mut headers = Vec::new();
    for (key, header) in [
        (datadog::API_KEY, "DD-API-KEY"),
        (datadog::APP_KEY, "DD-APPLICATION-KEY"),
    ] {
        let bytes = secret_file(p, dir, key, &[datadog::API_KEY, datadog::APP_KEY])?;
        let value = String::from_utf8(bytes).map_err(|_| {
            ConfigError(format!(
                "provider {}: secret key {key:?} is not UTF-8 text",
                p.name
            ))
        })?;
        headers.push((header, value));
    }
    Ok(headers)
}

/// Keptn's getDTSecret: the secretKeyRef key's value, newlines trimmed at both ends.
fn dynatrace_token(p: &Provider) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let dir = p
        .secret_dir
        .as_deref()
        .expect("spec checks dynatrace has a secretDir");
    let key = p
        .secret_key
        .as_deref()
        .expect("spec checks dynatrace has a secretKey");
    let bytes = secret_file(p, dir, key, &[key])?;
    let token = String::from_utf8(bytes).map_err(|_| {
        ConfigError(format!(
            "provider {}: secret key {key:?} is not UTF-8 text",
            p.name
        ))
    })?;
    let token = token.trim_matches('\n');
    if token.is_empty() {
        return Err(ConfigError(format!(
            "provider {}: secret key {key:?} is empty",
            p.name
        )));
    }
    Ok(vec![("Authorization", format!("Api-Token {token}"))])
}

/// The key's bytes exactly as the Secret holds them (no trimming: Keptn sends them as they are).
fn secret_file(p: &Provider, dir: &Path, key: &str, keys: &[&str]) -> Result<Vec<u8>, ConfigError> {
    let path = dir.join(key);
    fs::read(&path).map_err(|e| {
        ConfigError(format!(
            "provider {}: cannot read secret key {key:?} at {}: {e} (Keptn's {} provider needs keys {} in the secretKeyRef Secret)",
            p.name,
            path.display(),
            p.kind,
            keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(" and ")
        ))
    })
}
