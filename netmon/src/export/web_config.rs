//! `--web-config FILE`: TLS and basic auth in the exporter-toolkit `web-config.yml` format
//! that Prometheus exporters share.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use rustls::{
    RootCertStore, ServerConfig,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// The parsed web configuration, ready to serve with.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    /// User name -> bcrypt hash.
    pub basic_auth_users: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.basic_auth_users.keys())
            .finish()
    }
}

fn tls_version(name: &str) -> anyhow::Result<&'static rustls::SupportedProtocolVersion> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => bail!("{name} is not supported (insecure); use TLS12 or TLS13"),
        other => bail!("unknown TLS version {other:?} (expected TLS12 or TLS13)"),
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

impl WebConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading web config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, base).with_context(|| format!("in web config {}", path.display()))
    }

    /// Parses the YAML; relative file names are relative to `base` (the file's directory), as
    /// exporter-toolkit does.
    pub fn from_yaml(text: &str, base: &Path) -> anyhow::Result<Self> {
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let basic_auth_users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &basic_auth_users {
            if user.contains(':') {
                bail!("basic_auth_users: user name {user:?} contains ':'");
            }
            if !hash.starts_with("$2") {
                bail!("basic_auth_users.{user}: not a bcrypt hash");
            }
        }
        let tls = file
            .tls_server_config
            .map(|tls| Self::server_config(tls, base))
            .transpose()?;
        Ok(Self {
            tls,
            basic_auth_users,
        })
    }

    fn server_config(tls: TlsServerConfig, base: &Path) -> anyhow::Result<Arc<ServerConfig>> {
        let resolve = |p: &Path| base.join(p);
        let certs = read_certs(&resolve(&tls.cert_file))?;
        let key_path = resolve(&tls.key_file);
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("reading private key from {}", key_path.display()))?;

        let mut versions = vec![&rustls::version::TLS12, &rustls::version::TLS13];
        let min = tls.min_version.as_deref().map(tls_version).transpose()?;
        let max = tls.max_version.as_deref().map(tls_version).transpose()?;
        if min == Some(&rustls::version::TLS13) {
            versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_3);
        }
        if max == Some(&rustls::version::TLS12) {
            versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
        }
        if versions.is_empty() {
            bail!("min_version is above max_version");
        }

        let client_ca = || -> anyhow::Result<RootCertStore> {
            let path = tls
                .client_ca_file
                .as_deref()
                .context("client_auth_type needs client_ca_file")?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&resolve(path))? {
                roots.add(cert).context("adding a client CA")?;
            }
            Ok(roots)
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Option<Arc<dyn ClientCertVerifier>> =
            match tls.client_auth_type.as_deref().unwrap_or("NoClientCert") {
                "NoClientCert" => None,
                "RequireAndVerifyClientCert" => Some(
                    WebPkiClientVerifier::builder_with_provider(
                        Arc::new(client_ca()?),
                        provider.clone(),
                    )
                    .build()?,
                ),
                "VerifyClientCertIfGiven" => Some(
                    WebPkiClientVerifier::builder_with_provider(
                        Arc::new(client_ca()?),
                        provider.clone(),
                    )
                    .allow_unauthenticated()
                    .build()?,
                ),
                other => bail!(
                    "client_auth_type {other:?} is not supported (NoClientCert, \
                     VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ),
            };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .context("TLS versions")?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .context("the certificate and key do not form a usable pair")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!(
            "{:#}",
            WebConfig::from_yaml(text, Path::new("/nonexistent")).unwrap_err()
        )
    }

    #[test]
    fn empty_means_plain_http_without_auth() {
        let config = WebConfig::from_yaml("", Path::new(".")).unwrap();
        assert!(config.tls.is_none() && config.basic_auth_users.is_empty());
    }

    #[test]
    fn reads_basic_auth_users() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let config = WebConfig::from_yaml(
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(config.basic_auth_users["alice"], hash);
    }

    #[test]
    fn refuses_bad_input_clearly() {
        assert!(err("basic_auth_users:\n  bob: plaintext\n").contains("not a bcrypt hash"));
        assert!(err("tls_server_config:\n  cert_file: a\n").contains("missing field `key_file`"));
        assert!(
            err("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n").contains("a.crt")
        );
        assert!(err("cipher_suites: []\n").contains("unknown field `cipher_suites`"));
        assert!(err("- a list\n").contains("invalid type"));
    }
}
