//! TLS from clients on the listener: Envoy's `envoy.transport_sockets.tls` transport socket with a
//! `DownstreamTlsContext`, on rustls with ring.
//!
//! What Envoy does, gw-proxy does:
//! - `tls_certificates` (PEM chain and key, inline or from a file) are all served from one
//!   context, chosen as Envoy's default certificate selector chooses: by the client's SNI, a
//!   certificate naming it exactly before one whose wildcard covers it (names from the DNS
//!   subject alt names, or the subject's common name when there are none); among those, the
//!   first whose key the client can verify; without SNI, or when no name matches, the first
//!   certificate whose key the client can verify, else the first.
//! - `require_sni` (which Envoy documents and does not implement) refuses clients that send no
//!   SNI or one no certificate names.
//! - `alpn_protocols` are negotiated (none: no ALPN); a client offering none of them goes on
//!   without ALPN (as Envoy's ALPN callback, rather than rustls's fatal alert); the connection is
//!   then served as HTTP/2 or HTTP/1.1 by what ALPN agreed, or what the client speaks without it.
//! - `tls_params`' protocol versions, with Envoy's server defaults (TLS 1.2 to 1.3).
//! - Session resumption as Envoy's defaults: stateless tickets (a key made at start) unless
//!   `disable_stateless_session_resumption`, session ids unless
//!   `disable_stateful_session_resumption`; `prefer_client_ciphers` followed.
//! - `transport_socket_connect_timeout` of the filter chain bounds the handshake (unset: the
//!   bound of a request head).
//!
//! What it cannot follow is refused by name, so the listener is NACKed rather than served with
//! less than was asked: client certificates (`require_client_certificate`, a validation
//! context), SDS, certificate providers and selectors, private key providers, PKCS#12 and key
//! passwords, OCSP staples and stapling policies, session ticket keys, session timeouts,
//! cipher/curve/signature lists, versions below TLS 1.2.

use super::{data, refuse_common, tls_config, versions, Side};
use gw_proto::envoy::pb::envoy::config::core::v3::{DataSource, TransportSocket};
use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
    downstream_tls_context::{OcspStaplePolicy, SessionTicketKeysType},
    CommonTlsContext, DownstreamTlsContext, TlsCertificate,
};
use gw_proto::model::KeyPart;
use prost::Message;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The type of a listener's TLS config.
pub const DOWNSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// How clients' connections to the listener are secured: rustls server configs.
pub struct ServerTls {
    /// With the context's ALPN protocols.
    cfg: Arc<rustls::ServerConfig>,
    /// The same without ALPN, for clients that offer none of them.
    no_alpn: Arc<rustls::ServerConfig>,
    /// The filter chain's `transport_socket_connect_timeout`.
    pub handshake_timeout: Option<Duration>,
    /// The context as received: what identifies these settings.
    raw: Vec<u8>,
    /// A hash of `raw` and the timeout: connections accepted under other settings are drained.
    pub id: u64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("id", &self.id)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// The listener's TLS settings in use, so that a config update that keeps them (most do: a
/// route changed) keeps its `ServerTls` rather than parsing keys again (compile time only).
#[derive(Debug, Default)]
pub struct ServerTlsMade(std::sync::Mutex<Option<Arc<ServerTls>>>);

/// Why a client's handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client closed before its hello: a port probe, not a failed handshake.
    Closed,
    /// It failed.
    Failed(std::io::Error),
}

impl ServerTls {
    /// The served filter chain's transport socket, read: `None` for plaintext (none, or
    /// `raw_buffer`). `handshake_timeout`: the chain's `transport_socket_connect_timeout`.
    pub fn of(
        socket: Option<&TransportSocket>,
        handshake_timeout: Option<Duration>,
        made: &ServerTlsMade,
    ) -> Result<Option<Arc<ServerTls>>, String> {
        let Some(any) = tls_config(socket, DOWNSTREAM_TLS_CONTEXT)? else {
            return Ok(None);
        };
        let mut made = made
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = made
            .as_ref()
            .filter(|t| t.raw == any.value && t.handshake_timeout == handshake_timeout)
        {
            return Ok(Some(t.clone()));
        }
        let ctx = DownstreamTlsContext::decode(any.value.as_slice())
            .map_err(|e| format!("transport_socket: bad DownstreamTlsContext: {e}"))?;
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&any.value, handshake_timeout).hash(&mut h);
            h.finish()
        };
        let t = Arc::new(ServerTls::new(
            &ctx,
            any.value.clone(),
            handshake_timeout,
            id,
        )?);
        *made = Some(t.clone());
        Ok(Some(t))
    }

    fn new(
        ctx: &DownstreamTlsContext,
        raw: Vec<u8>,
        handshake_timeout: Option<Duration>,
        id: u64,
    ) -> Result<ServerTls, String> {
        let side = Side::Listener;
        let refuse = |what: &str| Err(format!("{side}: {what} is not supported"));
        if ctx.require_client_certificate.is_some_and(|b| b.value) {
            return refuse("require_client_certificate (client certificates)");
        }
        let stateless = match &ctx.session_ticket_keys_type {
            None => true,
            Some(SessionTicketKeysType::DisableStatelessSessionResumption(off)) => !off,
            Some(_) => return refuse("session ticket keys"),
        };
        if ctx.session_timeout.is_some() {
            return refuse("session_timeout");
        }
        if ctx.ocsp_staple_policy != OcspStaplePolicy::LenientStapling as i32 {
            return refuse("an OCSP stapling policy other than lenient");
        }
        let default = CommonTlsContext::default();
        let common = ctx.common_tls_context.as_ref().unwrap_or(&default);
        if common.validation_context_type.is_some() {
            return refuse("a validation context (client certificates)");
        }
        refuse_common(common, side)?;
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
            .with_cert_resolver(Arc::new(BySni::new(
                certs,
                ctx.require_sni.is_some_and(|b| b.value),
            )));
        cfg.ignore_client_order = !ctx.prefer_client_ciphers;
        if stateless {
            cfg.ticketer =
                rustls::crypto::ring::Ticketer::new().map_err(|e| format!("{side}: {e}"))?;
        }
        if ctx.disable_stateful_session_resumption {
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            if !stateless {
                cfg.send_tls13_tickets = 0;
            }
        }
        let no_alpn = Arc::new(cfg.clone());
        cfg.alpn_protocols = common
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        Ok(ServerTls {
            cfg: Arc::new(cfg),
            no_alpn,
            handshake_timeout,
            raw,
            id,
        })
    }

    /// The TLS handshake with a client on `io`.
    pub async fn accept(
        &self,
        io: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, HandshakeError> {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
                _ => HandshakeError::Failed(e),
            })?;
        // A client offering protocols none of which is ours goes on without ALPN.
        let hello = start.client_hello();
        let offers_ours = hello.alpn().is_none_or(|mut offered| {
            offered.any(|p| self.cfg.alpn_protocols.iter().any(|o| o == p))
        });
        let cfg = match offers_ours {
            true => self.cfg.clone(),
            false => self.no_alpn.clone(),
        };
        start.into_stream(cfg).await.map_err(HandshakeError::Failed)
    }
}

/// A certificate and its key, checked to belong together (the check the control plane makes on
/// apply).
fn certified_key(c: &TlsCertificate) -> Result<CertifiedKey, String> {
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
    let chain = pem(c.certificate_chain.as_ref(), "certificate_chain")?;
    let key = pem(c.private_key.as_ref(), "private_key")?;
    gw_proto::model::certified_key(&chain, &key).map_err(|(part, why)| match part {
        KeyPart::Chain => format!("certificate_chain {why}"),
        KeyPart::Key => format!("private_key {why}"),
    })
}

/// The DNS names a certificate is for, lower case: its DNS subject alt names, or its subject's
/// common name when it has none (as Envoy indexes them).
fn names(ck: &CertifiedKey) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Some(Ok((_, cert))) = ck
        .end_entity_cert()
        .ok()
        .map(|der| x509_parser::parse_x509_certificate(der))
    else {
        return Vec::new();
    };
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .take(1)
            .collect(),
    }
}

/// Picks the certificate for a client, as Envoy's default selector does among one context's.
#[derive(Debug)]
struct BySni {
    certs: Vec<Arc<CertifiedKey>>,
    /// Certificates by the exact names they are for, in the context's order.
    exact: HashMap<String, Vec<usize>>,
    /// Certificates by the domain their wildcard covers (`*.example.com`: `example.com`).
    wildcard: HashMap<String, Vec<usize>>,
    require_sni: bool,
}

impl BySni {
    fn new(certs: Vec<CertifiedKey>, require_sni: bool) -> BySni {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, ck) in certs.iter().enumerate() {
            for name in names(ck) {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(domain) => (&mut wildcard, domain.to_owned()),
                    None => (&mut exact, name),
                };
                let at = map.entry(key).or_default();
                if !at.contains(&i) {
                    at.push(i);
                }
            }
        }
        BySni {
            certs: certs.into_iter().map(Arc::new).collect(),
            exact,
            wildcard,
            require_sni,
        }
    }

    /// Of `candidates`, the first whose key the client can verify, else the first.
    fn pick(
        &self,
        candidates: impl Iterator<Item = usize> + Clone,
        hello: &ClientHello<'_>,
    ) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        candidates
            .clone()
            .find(|i| self.certs[*i].key.choose_scheme(schemes).is_some())
            .or_else(|| candidates.clone().next())
            .map(|i| self.certs[i].clone())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let sni = sni.to_ascii_lowercase();
            let named = self.exact.get(&sni).or_else(|| {
                sni.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            });
            if let Some(named) = named {
                return self.pick(named.iter().copied(), &hello);
            }
        }
        if self.require_sni {
            return None;
        }
        self.pick(0..self.certs.len(), &hello)
    }
}
