//! TLS on a listener (`spec.tls` of `kind: Listener`): HTTPS termination, Envoy's
//! `DownstreamTlsContext`.

use super::validate::FieldError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// TLS on a listener: clients speak TLS to it, HTTP/2 or HTTP/1.1 by ALPN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListenerTls {
    /// Certificates served. A client's SNI picks the first whose certificate is valid for that
    /// name (wildcards as browsers read them); without SNI, or when none is, the first.
    pub certificates: Vec<TlsCertificate>,
    /// The lowest protocol version accepted: `"1.2"` (empty: the default, as Envoy's) or `"1.3"`.
    /// The highest is TLS 1.3.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub min_version: String,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsCertificate {
    /// PEM certificates, the server's own first, then the intermediates clients need.
    pub cert_chain: String,
    /// The PEM private key of the first certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub private_key: String,
}

impl std::fmt::Debug for TlsCertificate {
    // The key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field(
                "cert_chain",
                &format_args!("{} bytes", self.cert_chain.len()),
            )
            .finish_non_exhaustive()
    }
}

/// What `gwctl describe` shows in place of a private key.
pub const HIDDEN_KEY: &str = "(hidden)";

impl ListenerTls {
    /// TLS versions from `min_version`: whether TLS 1.2 is accepted (TLS 1.3 always is).
    pub fn accepts_tls12(&self) -> bool {
        self.min_version != "1.3"
    }

    /// This spec with every private key replaced by [`HIDDEN_KEY`], for display.
    pub fn redacted(&self) -> ListenerTls {
        let mut t = self.clone();
        for c in &mut t.certificates {
            c.private_key = HIDDEN_KEY.to_owned();
        }
        t
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        if !matches!(self.min_version.as_str(), "" | "1.2" | "1.3") {
            return Err(FieldError::new(
                "spec.tls.minVersion",
                format!(
                    "{:?} is not a TLS version gw serves; one of 1.2, 1.3",
                    self.min_version
                ),
            ));
        }
        if self.certificates.is_empty() {
            return Err(FieldError::new(
                "spec.tls.certificates",
                "needs at least one certificate",
            ));
        }
        for (i, c) in self.certificates.iter().enumerate() {
            c.check().map_err(|(field, why)| {
                FieldError::new(format!("spec.tls.certificates[{i}].{field}"), why)
            })?;
        }
        Ok(())
    }
}

impl TlsCertificate {
    /// Whether the chain and the key are what a proxy can serve (see [`certified_key`]); the
    /// error names the field (`certChain` or `privateKey`).
    fn check(&self) -> Result<(), (&'static str, String)> {
        certified_key(self.cert_chain.as_bytes(), self.private_key.as_bytes())
            .map(drop)
            .map_err(|(part, why)| match part {
                KeyPart::Chain => ("certChain", why),
                KeyPart::Key => ("privateKey", why),
            })
    }
}

/// Which half of a certificate and key pair is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// The certificate chain.
    Chain,
    /// The private key.
    Key,
}

/// A PEM certificate chain (the server's certificate first) and its PEM private key, as a
/// server serves them: every certificate must parse, and the key must be one rustls signs with
/// (RSA, ECDSA P-256/P-384, Ed25519; PKCS#8, PKCS#1 or SEC1) and be the first certificate's.
/// What the control plane checks on apply and what gw-proxy loads are this one function.
pub fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::sign::CertifiedKey, (KeyPart, String)> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (KeyPart::Chain, format!("is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err((
            KeyPart::Chain,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    for (n, c) in chain.iter().enumerate() {
        webpki::EndEntityCert::try_from(c)
            .map_err(|e| (KeyPart::Chain, format!("certificate {}: {e}", n + 1)))?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        (
            KeyPart::Key,
            format!("is not a PEM private key (PKCS#8, RSA or EC): {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| (KeyPart::Key, format!("cannot be used to sign: {e}")))?;
    let ck = rustls::sign::CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        (
            KeyPart::Key,
            format!("is not the first certificate's key ({e})"),
        )
    })?;
    Ok(ck)
}
