//! The thin HTTP edge: one blocking ureq agent per provider (TLS verification as the provider's
//! `insecureSkipTlsVerify` says, webpki roots compiled in), the provider's credential headers,
//! a POST form with client_golang's GET fallback or a plain GET, and transport errors worded
//! as "unreachable". Proxies come from the
//! environment (`HTTPS_PROXY`, `NO_PROXY`, …) as for Keptn's Go client.

use std::time::Duration;

use ureq::tls::TlsConfig;

use crate::call::{Call, Method};

/// Keptn's providers give each query 20 s (`context.WithTimeout(ctx, 20*time.Second)`).
const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// Credential headers (`Authorization`, Datadog's keys); never printed.
    headers: Vec<(&'static str, String)>,
}

impl Client {
    pub fn new(
        base: &str,
        insecure_skip_tls_verify: bool,
        headers: Vec<(&'static str, String)>,
    ) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .tls_config(
                TlsConfig::builder()
                    .disable_verification(insecure_skip_tls_verify)
                    .build(),
            )
            .user_agent("klt-evaluate/0.1")
            .build();
        Client {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            headers,
        }
    }

    /// Performs the call; returns (status, body) or why the server could not be reached.
    pub fn send(&self, call: &Call) -> Result<(u16, String), String> {
        let mut url = format!("{}{}", self.base, call.path);
        if let Some(raw) = &call.raw_query {
            url = format!("{url}?{raw}");
        }
        if call.method == Method::PostForm {
            let mut post = self.agent.post(&url);
            for (name, value) in &self.headers {
                post = post.header(*name, value);
            }
            let form = call.params.iter().map(|(k, v)| (*k, v.as_str()));
            let (status, body) = read(post.send_form(form).map_err(transport)?)?;
            if status != 405 && status != 501 {
                return Ok((status, body));
            }
        }
        let mut get = self.agent.get(&url).header("Accept", "application/json");
        for (name, value) in &self.headers {
            get = get.header(*name, value);
        }
        for (k, v) in &call.params {
            get = get.query(*k, v);
        }
        read(get.call().map_err(transport)?)
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Result<(u16, String), String> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok((status, body))
}

fn transport(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("unreachable: no answer within {}s", TIMEOUT.as_secs()),
        ureq::Error::HostNotFound => "unreachable: host not found".into(),
        ureq::Error::ConnectionFailed => "unreachable: connection failed".into(),
        ureq::Error::Io(io) => format!("unreachable: {io}"),
        other => format!("request failed: {other}"),
    }
}
