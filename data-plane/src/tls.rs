//! TLS to a cluster's endpoints: Envoy's `envoy.transport_sockets.tls` transport socket
//! (`UpstreamTlsContext`), on rustls with ring.
//!
//! What Envoy does, gw-proxy does:
//! - `sni` is sent as the server name; without it none is sent.
//! - With a `validation_context`, the certificate chain must lead to one of `trusted_ca`'s
//!   certificates (a file, or inline PEM); with `match_typed_subject_alt_names` (DNS, exact) it
//!   must also be valid for one of those names. Without names, the chain alone is checked (as
//!   Envoy does: it checks no name unless told to).
//! - Without a `validation_context` the endpoint's certificate is not verified (the handshake's
//!   signatures still are).
//! - `alpn_protocols` are offered; without them, the cluster's protocol (`http/1.1`, or `h2` for
//!   an HTTP/2 cluster), as Envoy's connection pools offer theirs.
//! - `tls_params`' protocol versions, with Envoy's defaults for a client: at least TLS 1.2, at
//!   most TLS 1.2 unless TLS 1.3 is allowed (the control plane allows it). Below 1.2 rustls does
//!   not go: a minimum below it is taken as 1.2, a maximum below it refused.
//!
//! What it cannot follow is refused by name, so the config is NACKed rather than half applied:
//! client certificates, SDS, certificate providers, SAN matchers other than exact DNS names,
//! SPKI/hash pinning, CRLs, cipher/curve/signature lists, custom validators and handshakers, and
//! the other knobs that would make it verify or negotiate differently from what was asked.

use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, DataSource, TransportSocket};
use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
};
use gw_proto::envoy::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use prost::Message;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

mod server;
pub use server::{HandshakeError, ServerTls, ServerTlsMade, DOWNSTREAM_TLS_CONTEXT};

/// The name of Envoy's TLS transport socket.
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// The type of its config.
pub const UPSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// How a cluster's connections are secured: a rustls client config and the name to send.
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    sni: Option<ServerName<'static>>,
    /// Identifies these settings (a hash of the context): endpoints of a cluster whose TLS
    /// settings changed are new endpoints, so no connection made under the old ones is reused.
    pub id: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The cluster's transport socket, read: `None` for plaintext (none, or `raw_buffer`).
    /// `http2`: the cluster speaks HTTP/2. The same settings as a config before give the same
    /// `UpstreamTls` from `made` (no CA file read again, no client config built again: the
    /// endpoints, which keep their connections' settings, would not use it anyway).
    pub fn of(
        socket: Option<&TransportSocket>,
        http2: bool,
        made: &TlsMade,
    ) -> Result<Option<Arc<UpstreamTls>>, String> {
        let Some(any) = tls_config(socket, UPSTREAM_TLS_CONTEXT)? else {
            return Ok(None);
        };
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&any.value, http2).hash(&mut h);
            h.finish() | 1
        };
        let mut made = made
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        made.retain(|_, t| t.strong_count() > 0);
        if let Some(t) = made.get(&id).and_then(std::sync::Weak::upgrade) {
            return Ok(Some(t));
        }
        let ctx = UpstreamTlsContext::decode(any.value.as_slice())
            .map_err(|e| format!("transport_socket: bad UpstreamTlsContext: {e}"))?;
        let t = Arc::new(UpstreamTls::new(&ctx, http2, id)?);
        made.insert(id, Arc::downgrade(&t));
        Ok(Some(t))
    }

    /// Reads an `UpstreamTlsContext` for a cluster that speaks HTTP/2 (`http2`) or HTTP/1.1;
    /// `id` names these settings.
    fn new(ctx: &UpstreamTlsContext, http2: bool, id: u64) -> Result<UpstreamTls, String> {
        let default = CommonTlsContext::default();
        let common = ctx.common_tls_context.as_ref().unwrap_or(&default);
        let refuse = |what: &str| Err(format!("upstream TLS: {what} is not supported"));
        if !common.tls_certificates.is_empty() {
            return refuse("a client certificate");
        }
        if ctx.auto_host_sni || ctx.auto_sni_san_validation {
            return refuse("auto_host_sni / auto_sni_san_validation");
        }
        refuse_common(common, Side::Upstream)?;
        let versions = versions(common.tls_params.as_ref(), Side::Upstream)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = match &common.validation_context_type {
            None => Verifier::none(provider.clone()),
            Some(ValidationContextType::ValidationContext(v)) => {
                Verifier::checking(v, provider.clone())?
            }
            Some(_) => return refuse("a validation context other than an inline one"),
        };
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("upstream TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        cfg.alpn_protocols = match common.alpn_protocols.as_slice() {
            [] if http2 => vec![b"h2".to_vec()],
            [] => vec![b"http/1.1".to_vec()],
            offered => offered.iter().map(|p| p.as_bytes().to_vec()).collect(),
        };
        let sni = match ctx.sni.as_str() {
            "" => None,
            // rustls would drop the dot and match what Envoy would not.
            name if name.ends_with('.') => {
                return Err(format!("upstream TLS: sni {name:?} ends with a dot"))
            }
            name => Some(
                ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("upstream TLS: sni {name:?} is not a server name"))?,
            ),
        };
        cfg.enable_sni = sni.is_some();
        Ok(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            sni,
            id,
        })
    }

    /// A TLS session over `stream` to the endpoint at `address` (`host:port`).
    pub async fn connect(
        &self,
        stream: TcpStream,
        address: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        // rustls wants a name even when none is sent: the endpoint's own.
        let name = match &self.sni {
            Some(n) => n.clone(),
            None => endpoint_name(address),
        };
        self.connector.connect(name, stream).await
    }
}

/// The TLS context a transport socket carries, if it is of type `type_url`; `None` for plaintext
/// (no socket, or `raw_buffer`). As Envoy, the extension is known by its config's type, and by
/// its name only when it has no config.
fn tls_config<'a>(
    socket: Option<&'a TransportSocket>,
    type_url: &str,
) -> Result<Option<&'a gw_proto::envoy::pb::google::protobuf::Any>, String> {
    use gw_proto::envoy::pb::envoy::config::core::v3::transport_socket::ConfigType;
    const RAW_BUFFER: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
    let Some(socket) = socket else {
        return Ok(None);
    };
    let any = socket
        .config_type
        .as_ref()
        .map(|ConfigType::TypedConfig(any)| any);
    match any {
        Some(any) if any.type_url == type_url => Ok(Some(any)),
        Some(any) if any.type_url == RAW_BUFFER => Ok(None),
        None if socket.name == "envoy.transport_sockets.raw_buffer" => Ok(None),
        _ => Err(format!(
            "transport_socket {:?} ({}) is not supported (TLS or raw_buffer)",
            socket.name,
            any.map_or("no config", |a| a.type_url.as_str())
        )),
    }
}

/// Refuses what neither end of gw-proxy's TLS follows: SDS and certificate providers, custom
/// handshakers and certificate selectors, key logs.
fn refuse_common(common: &CommonTlsContext, side: Side) -> Result<(), String> {
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
        return Err(format!(
            "{side}: SDS, a certificate provider or selector, a custom handshaker or a key log \
             is not supported"
        ));
    }
    Ok(())
}

/// The protocol versions `params` allow, with Envoy's defaults when it says none: TLS 1.2 only
/// upstream, TLS 1.2 to 1.3 on a listener. Upstream, a minimum below TLS 1.2 is taken as 1.2
/// (rustls goes no lower); a listener asking for one is refused (its clients would be). Errors
/// start with `side`.
fn versions(
    params: Option<
        &gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::TlsParameters,
    >,
    side: Side,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
    use gw_proto::envoy::pb::envoy::extensions::transport_sockets::tls::v3::tls_parameters::TlsProtocol;
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    let auto_max: &'static [_] = match side {
        Side::Upstream => &BOTH[1..],
        Side::Listener => &BOTH,
    };
    let Some(p) = params else {
        return Ok(auto_max);
    };
    if !p.cipher_suites.is_empty()
        || !p.ecdh_curves.is_empty()
        || !p.signature_algorithms.is_empty()
        || !p.compliance_policies.is_empty()
    {
        return Err(format!(
            "{side}: cipher suites, curves, signature algorithms or compliance policies \
             are not supported"
        ));
    }
    let v = |n: i32| TlsProtocol::try_from(n).unwrap_or(TlsProtocol::TlsAuto);
    let (min, max) = (
        v(p.tls_minimum_protocol_version),
        v(p.tls_maximum_protocol_version),
    );
    let tls13_min = min == TlsProtocol::TlSv13;
    if side == Side::Listener && matches!(min, TlsProtocol::TlSv10 | TlsProtocol::TlSv11) {
        return Err(format!(
            "{side}: a minimum version below TLS 1.2 is not supported"
        ));
    }
    match max {
        TlsProtocol::TlsAuto if side == Side::Listener && tls13_min => Ok(&BOTH[..1]),
        TlsProtocol::TlsAuto | TlsProtocol::TlSv12 if tls13_min => {
            Err(format!("{side}: the minimum version is above the maximum"))
        }
        TlsProtocol::TlsAuto => Ok(auto_max),
        TlsProtocol::TlSv12 => Ok(&BOTH[1..]),
        TlsProtocol::TlSv13 if tls13_min => Ok(&BOTH[..1]),
        TlsProtocol::TlSv13 => Ok(&BOTH),
        TlsProtocol::TlSv10 | TlsProtocol::TlSv11 => Err(format!(
            "{side}: a maximum version below TLS 1.2 is not supported"
        )),
    }
}

/// Which end of a connection gw-proxy's TLS is for: errors name it, and defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// To a cluster's endpoints (`UpstreamTlsContext`).
    Upstream,
    /// From clients, on the listener (`DownstreamTlsContext`).
    Listener,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Upstream => "upstream TLS",
            Side::Listener => "listener TLS",
        })
    }
}

/// The TLS settings in use, by id, so that a config update that keeps a cluster's settings
/// keeps its `UpstreamTls` (compile time only).
#[derive(Debug, Default)]
pub struct TlsMade(std::sync::Mutex<std::collections::HashMap<u64, std::sync::Weak<UpstreamTls>>>);

/// The endpoint's host as a server name (its IP, or its DNS name).
fn endpoint_name(address: &str) -> ServerName<'static> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned())
            .unwrap_or(ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into())),
    }
}

/// The bytes of a `DataSource` (`what` names it in errors).
fn data(d: &DataSource, what: &str) -> Result<Vec<u8>, String> {
    match &d.specifier {
        Some(data_source::Specifier::Filename(f)) => {
            std::fs::read(f).map_err(|e| format!("{what} {f}: {e}"))
        }
        Some(data_source::Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(data_source::Specifier::InlineString(s)) => Ok(s.as_bytes().to_vec()),
        Some(data_source::Specifier::EnvironmentVariable(v)) => std::env::var(v)
            .map(String::into_bytes)
            .map_err(|_| format!("{what}: ${v} is not set")),
        None => Err(format!("{what}: no data")),
    }
}

/// How the endpoint's certificate is checked.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// The chain's check (none: nothing is checked).
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Names one of which the certificate must be valid for (none: any).
    names: Vec<ServerName<'static>>,
}

impl Verifier {
    fn none(provider: Arc<CryptoProvider>) -> Verifier {
        Verifier {
            provider,
            chain: None,
            names: Vec::new(),
        }
    }

    fn checking(
        v: &CertificateValidationContext,
        provider: Arc<CryptoProvider>,
    ) -> Result<Verifier, String> {
        let refuse = |what: &str| Err(format!("upstream TLS: {what} is not supported"));
        if !v.verify_certificate_spki.is_empty() || !v.verify_certificate_hash.is_empty() {
            return refuse("certificate pinning (spki / hash)");
        }
        if v.require_signed_certificate_timestamp
            .is_some_and(|b| b.value)
            || v.max_verify_depth.is_some()
            || v.custom_validator_config.is_some()
            || v.allow_expired_certificate
            || v.trust_chain_verification != 0
            || v.system_root_certs.is_some()
        {
            return refuse(
                "signed certificate timestamps, a verify depth, a custom validator, expired \
                 certificates, skipping chain verification or system_root_certs",
            );
        }
        if v.crl.is_some() {
            return refuse("a CRL");
        }
        #[allow(deprecated)]
        if !v.match_subject_alt_names.is_empty() {
            return refuse("match_subject_alt_names (use match_typed_subject_alt_names)");
        }
        if v.ca_certificate_provider_instance.is_some() || v.watched_directory.is_some() {
            return refuse("a CA certificate provider or watched directory");
        }
        let Some(ca) = &v.trusted_ca else {
            return refuse("a validation context without trusted_ca");
        };
        let pem = data(ca, "trusted_ca").map_err(|e| format!("upstream TLS: {e}"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("upstream TLS: trusted_ca: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("upstream TLS: trusted_ca: {e}"))?;
        }
        if roots.is_empty() {
            return Err("upstream TLS: trusted_ca holds no PEM certificate".into());
        }
        let mut names = Vec::new();
        for m in &v.match_typed_subject_alt_names {
            let exact = m
                .matcher
                .as_ref()
                .and_then(|s| match &s.match_pattern {
                    Some(MatchPattern::Exact(e)) if !s.ignore_case => Some(e.clone()),
                    _ => None,
                })
                .filter(|_| m.san_type == SanType::Dns as i32);
            // Checked as a DNS name, as Envoy matches it against DNS SANs only.
            let name = exact.and_then(|e| {
                let dns = rustls::pki_types::DnsName::try_from(e).ok()?.to_owned();
                Some(ServerName::DnsName(dns))
            });
            let Some(name) = name else {
                return refuse("a SAN matcher other than an exact DNS name");
            };
            names.push(name);
        }
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("upstream TLS: {e}"))?;
        Ok(Verifier {
            provider,
            chain: Some(chain),
            names,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        if self.names.is_empty() {
            // The chain alone: webpki checks the name after the chain, so a wrong name means
            // the chain was good.
            return match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            };
        }
        let mut last = Error::InvalidCertificate(CertificateError::NotValidForName);
        for name in &self.names {
            match chain.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
