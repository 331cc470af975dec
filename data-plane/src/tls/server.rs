//! TLS from clients on the listener: Envoy's `envoy.transport_sockets.tls` transport socket with a
//! `DownstreamTlsContext`, on rustls with ring.
//!
//! What Envoy does, gw-proxy does:
//! - `tls_certificates` (PEM chain and key, inline or from a file) are all served from one
//!   context: the client's SNI picks the first certificate valid for that name (wildcards as
//!   webpki reads them); without SNI, or when none is valid for it, the first. `require_sni`
//!   refuses a client that sends none.
//! - `alpn_protocols` are negotiated (none: no ALPN, clients speak HTTP/1.1); the connection is
//!   then served as HTTP/2 or HTTP/1.1 by what the client speaks, as the HCM's `AUTO` codec.
//! - `tls_params`' protocol versions, with Envoy's server defaults (TLS 1.2 to 1.3).
//! - Session resumption by session ids and stateful TLS 1.3 tickets, unless
//!   `disable_stateful_session_resumption`; `prefer_client_ciphers` followed.
//!
//! What it cannot follow is refused by name, so the listener is NACKed rather than served with
//! less than was asked: client certificates (`require_client_certificate`, a validation
//! context), SDS, certificate providers and selectors, private key providers, PKCS#12 and key
//! passwords, OCSP staples, session ticket keys, cipher/curve/signature lists.

use super::{data, versions, Side};
use gw_proto::envoy::pb::envoy::config::core::v3::{DataSource, TransportSocket};
use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, TlsCertificate,
};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The type of a listener's TLS config.
pub const DOWNSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// How clients' connections to the listener are secured: a rustls server config.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Identifies these settings (a hash of the context as received).
    pub id: u64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The listener's TLS settings in use, so that a config update that keeps them (most do: a
/// route changed) keeps its `ServerTls` rather than parsing keys again (compile time only).
#[derive(Debug, Default)]
pub struct ServerTlsMade(std::sync::Mutex<Option<Arc<ServerTls>>>);

impl ServerTls {
    /// The served filter chain's transport socket, read: `None` for plaintext (none, or
    /// `raw_buffer`).
    pub fn of(
        socket: Option<&TransportSocket>,
        made: &ServerTlsMade,
    ) -> Result<Option<Arc<ServerTls>>, String> {
        use gw_proto::envoy::pb::envoy::config::core::v3::transport_socket::ConfigType;
        let Some(socket) = socket else {
            return Ok(None);
        };
        let any = socket
            .config_type
            .as_ref()
            .map(|ConfigType::TypedConfig(any)| any);
        match (socket.name.as_str(), any) {
            ("envoy.transport_sockets.raw_buffer", _) => Ok(None),
            (_, Some(any)) if any.type_url == DOWNSTREAM_TLS_CONTEXT => {
                let id = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    any.value.hash(&mut h);
                    h.finish()
                };
                let mut made = made
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(t) = made.as_ref().filter(|t| t.id == id) {
                    return Ok(Some(t.clone()));
                }
                let ctx = DownstreamTlsContext::decode(any.value.as_slice())
                    .map_err(|e| format!("transport_socket: bad DownstreamTlsContext: {e}"))?;
                let t = Arc::new(ServerTls::new(&ctx, id)?);
                *made = Some(t.clone());
                Ok(Some(t))
            }
            (name, any) => Err(format!(
                "transport_socket {name:?} ({}) is not supported (TLS or raw_buffer)",
                any.map_or("no config", |a| a.type_url.as_str())
            )),
        }
    }

    fn new(ctx: &DownstreamTlsContext, id: u64) -> Result<ServerTls, String> {
        let side = Side::Listener;
        let refuse = |what: &str| Err(format!("{side}: {what} is not supported"));
        if ctx.require_client_certificate.is_some_and(|b| b.value) {
            return refuse("require_client_certificate (client certificates)");
        }
        if ctx.session_ticket_keys_type.is_some() {
            return refuse("session ticket keys");
        }
        let common = ctx.common_tls_context.clone().unwrap_or_default();
        if common.validation_context_type.is_some() {
            return refuse("a validation context (client certificates)");
        }
        #[allow(deprecated)]
        if !common.tls_certificate_sds_secret_configs.is_empty()
            || common.tls_certificate_provider_instance.is_some()
            || common.custom_handshaker.is_some()
            || common.custom_tls_certificate_selector.is_some()
            || common.tls_certificate_certificate_provider.is_some()
            || common
                .tls_certificate_certificate_provider_instance
                .is_some()
            || common.key_log.is_some()
        {
            return refuse(
                "SDS, a certificate provider or selector, a custom handshaker, or a key log",
            );
        }
        if common.tls_certificates.is_empty() {
            return Err(format!("{side}: no tls_certificates"));
        }
        let certs = common
            .tls_certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                certified_key(c).map_err(|e| format!("{side}: tls_certificates[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let versions = versions(common.tls_params.as_ref(), side)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("{side}: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni {
                certs,
                require_sni: ctx.require_sni.is_some_and(|b| b.value),
            }));
        cfg.alpn_protocols = common
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        cfg.ignore_client_order = !ctx.prefer_client_ciphers;
        if ctx.disable_stateful_session_resumption {
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            cfg.send_tls13_tickets = 0;
        }
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            id,
        })
    }

    /// The TLS handshake with a client on `io`.
    pub async fn accept(
        &self,
        io: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.acceptor.accept(io).await
    }
}

/// A certificate and its key, checked to belong together.
fn certified_key(c: &TlsCertificate) -> Result<Arc<CertifiedKey>, String> {
    #[allow(deprecated)]
    if c.password.is_some()
        || c.pkcs12.is_some()
        || c.private_key_provider.is_some()
        || c.watched_directory.is_some()
        || c.ocsp_staple.is_some()
        || !c.signed_certificate_timestamp.is_empty()
    {
        return Err(
            "a key password, PKCS#12, a private key provider, a watched directory, an OCSP \
             staple or SCTs are not supported"
                .into(),
        );
    }
    let pem = |d: Option<&DataSource>, what: &str| match d {
        None => Err(format!("no {what}")),
        Some(d) => data(d, what),
    };
    let chain_pem = pem(c.certificate_chain.as_ref(), "certificate_chain")?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate_chain is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("certificate_chain holds no PEM certificate".into());
    }
    let key_pem = pem(c.private_key.as_ref(), "private_key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("private_key is not a PEM private key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private_key cannot sign: {e}"))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| format!("private_key is not the certificate's ({e})"))?;
    Ok(Arc::new(ck))
}

/// Picks the certificate for a client's SNI, as Envoy does among one context's certificates.
#[derive(Debug)]
struct BySni {
    certs: Vec<Arc<CertifiedKey>>,
    require_sni: bool,
}

impl BySni {
    /// Whether `ck`'s certificate is valid for `name`.
    fn valid_for(ck: &CertifiedKey, name: &ServerName<'_>) -> bool {
        ck.end_entity_cert()
            .ok()
            .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
            .is_some_and(|c| c.verify_is_valid_for_subject_name(name).is_ok())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok());
        match name {
            None if self.require_sni => None,
            None => self.certs.first().cloned(),
            Some(name) => self
                .certs
                .iter()
                .find(|ck| BySni::valid_for(ck, &name))
                .or_else(|| self.certs.first())
                .cloned(),
        }
    }
}
