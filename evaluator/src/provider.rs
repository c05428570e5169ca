//! Glue between an objective and its provider: the credentials from `secretDir` (as Keptn's
//! Prometheus provider reads them: keys `user` and `password` of the Secret, sent as HTTP basic
//! auth), one HTTP client per provider, and the fetch function the attempt loop calls.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::http::Client;
use crate::prometheus;
use crate::spec::{ConfigError, Evaluation, Objective, Provider};

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
            let auth = basic_auth(p)?;
            clients.insert(
                p.name.clone(),
                Client::new(&p.target_server, p.insecure_skip_tls_verify, auth),
            );
        }
        Ok(Providers { clients })
    }

    /// Queries the objective's provider now.
    pub fn fetch(&self, objective: &Objective) -> Result<String, String> {
        let client = &self.clients[&objective.provider.name];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let call = prometheus::call(objective, now);
        let (status, body) = client.send(&call)?;
        prometheus::value(objective, status, &body)
    }
}

fn basic_auth(p: &Provider) -> Result<Option<String>, ConfigError> {
    let Some(dir) = &p.secret_dir else {
        return Ok(None);
    };
    let user = secret_file(p, dir, USER_KEY)?;
    let password = secret_file(p, dir, PASSWORD_KEY)?;
    let mut pair = user;
    pair.push(b':');
    pair.extend_from_slice(&password);
    Ok(Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )))
}

/// The key's bytes exactly as the Secret holds them (no trimming: Keptn sends them as they are).
fn secret_file(p: &Provider, dir: &Path, key: &str) -> Result<Vec<u8>, ConfigError> {
    let path = dir.join(key);
    fs::read(&path).map_err(|e| {
        ConfigError(format!(
            "provider {}: cannot read secret key {key:?} at {}: {e} (Keptn's {} provider needs keys \"{USER_KEY}\" and \"{PASSWORD_KEY}\" in the secretKeyRef Secret)",
            p.name,
            path.display(),
            p.kind
        ))
    })
}
