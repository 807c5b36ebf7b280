//! The terminal view's HTTP client: GETs JSON from the agent's API, over TLS and with basic
//! auth when asked, and says plainly why an answer did not come.
use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::de::DeserializeOwned;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};

/// How to reach the agent.
pub struct Target {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM file of the certificate authority that signed the agent's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate (a self-signed one, say).
    pub insecure: bool,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Client {
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let base = target.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url {base:?}: give an http:// or https:// address");
        }
        let mut tls = TlsConfig::builder().disable_verification(target.insecure);
        if let Some(path) = &target.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            let certificates: Vec<Certificate<'static>> = parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(certificate)) => Some(certificate),
                    _ => None,
                })
                .collect();
            if certificates.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certificates));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let authorization = match (target.user, target.password) {
            (Some(user), password) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{}", password.unwrap_or_default()))
            )),
            (None, Some(_)) => bail!("a password was given without --user"),
            (None, None) => None,
        };
        Ok(Self {
            agent,
            base,
            authorization,
        })
    }

    /// The JSON at `path` of the API.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.get_with(path, &[])
    }

    /// The JSON at `path` of the API with the query parameters `query` (encoded here).
    pub fn get_with<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .get(&url)
            .query_pairs(query.iter().copied())
            .header("Accept", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = request
            .call()
            .map_err(|err| anyhow::anyhow!("cannot reach the agent at {}: {err}", self.base))?;
        let status = response.status().as_u16();
        match status {
            200 => response
                .body_mut()
                .read_json()
                .with_context(|| format!("{url}: the answer is not the API's JSON")),
            401 => bail!(
                "the agent at {} refused the credentials (401 Unauthorized): give --user, and \
                 the password in NETMON_PASSWORD or --password-file",
                self.base
            ),
            _ => {
                let body = response.body_mut().read_to_string().unwrap_or_default();
                bail!("{url}: the agent answered {status}: {}", body.trim())
            }
        }
    }
}
