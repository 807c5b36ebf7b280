//! Certificates for the agent's TLS and client authentication.

/// A certificate authority, a server certificate for 127.0.0.1 and client certificates, as
/// PEM files in a temporary directory.
pub struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("netmon-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap()
        };
        let ca = issuer("netmon test CA");
        let other_ca = issuer("another CA");
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.crt", ca.pem());
        let leaf = |names: Vec<String>,
                    signer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
                    file: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, signer)
                .unwrap();
            write(&format!("{file}.crt"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        leaf(vec!["127.0.0.1".into()], &ca, "server");
        leaf(vec!["client".into()], &ca, "client");
        leaf(vec!["stranger".into()], &other_ca, "stranger");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
