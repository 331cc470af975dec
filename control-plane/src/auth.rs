//! API authentication and authorization: bearer tokens, roles, tenant scoping.
//!
//! - A token is `gw_` and 40 hex digits; userdb keeps only its SHA-256. Each replica holds the
//!   token table in memory ([`Tokens`]), reloaded after every change it makes and every 2 s
//!   (so a revocation on another replica lands within 2 s), which lets a plain tonic interceptor
//!   check the `authorization: Bearer …` header without a database round trip.
//! - With `--auth` every gateway.v1 call needs a valid token (`UNAUTHENTICATED` otherwise), and
//!   the handlers check what the token's role may do ([`authorize`], `PERMISSION_DENIED`). Without
//!   it, calls carry no principal and everything is allowed, as before.
//! - Roles: `admin` does everything; `viewer` reads (every tenant, or one); `tenant-admin` reads
//!   and writes one tenant's clusters, routes, endpoints, alert rules and events, and reads and
//!   updates its tenant object, but touches nothing fleet-wide (listeners, tenants, proxies,
//!   tokens).
//! - With mTLS (`--tls-client-ca`), a token may also be bound to a certificate subject: a call
//!   with no bearer token whose verified client certificate has that subject common name acts as
//!   the token ([`Tokens::authenticate_subject`]).
//! - xDS and the telemetry services are not behind tokens: proxies and Envoy do not send them.

use crate::store::{Store, StoreError};
use gw_proto::model::{AlertMetric, Kind, Object, Spec};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::{Request, Status};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read and write within one tenant.
    TenantAdmin,
    /// Read only (every tenant, or one).
    Viewer,
}

impl Role {
    /// Stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::TenantAdmin, Role::Viewer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who is calling: a token's name, role and tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The one tenant it may touch; empty: every tenant.
    pub tenant: String,
    /// When it stops working (ms since the epoch).
    pub expires_at_ms: Option<i64>,
    /// The SHA-256 of its secret: a token re-made under the same name is another principal.
    pub hash: String,
}

/// Reading or changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Get, list, watch.
    Read,
    /// Create, update, delete, register, acknowledge.
    Write,
}

impl Principal {
    /// Whether this principal may `access` something of `tenant` (`None`: something fleet-wide,
    /// such as a listener, the tenant list, proxies or tokens).
    pub fn allows(&self, access: Access, tenant: Option<&str>) -> bool {
        let in_scope = match (tenant, self.tenant.as_str()) {
            (_, "") => true,
            (Some(t), mine) => t == mine,
            (None, _) => false,
        };
        match self.role {
            Role::Admin => in_scope,
            Role::Viewer => access == Access::Read && in_scope,
            Role::TenantAdmin => tenant.is_some() && in_scope,
        }
    }
}

/// The caller of `req`; `None` when the control plane runs without `--auth`.
pub fn principal<T>(req: &Request<T>) -> Option<&Principal> {
    req.extensions().get::<Principal>()
}

/// Refuses with `PERMISSION_DENIED` (naming the token, its role and what it tried) unless the
/// caller may `access` `tenant` (see [`Principal::allows`]). Always allowed without `--auth`.
pub fn authorize<T>(req: &Request<T>, access: Access, tenant: Option<&str>) -> Result<(), Status> {
    check(principal(req), access, tenant)
}

/// [`authorize`] for a principal already taken out of its request.
pub fn check(who: Option<&Principal>, access: Access, tenant: Option<&str>) -> Result<(), Status> {
    match who {
        None => Ok(()),
        Some(p) if p.allows(access, tenant) => Ok(()),
        Some(p) => {
            let verb = match access {
                Access::Read => "read",
                Access::Write => "change",
            };
            let what = match tenant {
                Some(t) => format!("tenant {t}"),
                None => "fleet-wide objects".to_owned(),
            };
            let scope = if p.tenant.is_empty() {
                String::new()
            } else {
                format!(" of tenant {}", p.tenant)
            };
            Err(Status::permission_denied(format!(
                "token {} ({}{scope}) may not {verb} {what}",
                p.name,
                p.role.as_str()
            )))
        }
    }
}

/// The tenant a list should cover: what was asked (empty: all), narrowed to the caller's tenant
/// when its token has one; refused when it asked for another tenant.
pub fn list_scope(who: Option<&Principal>, asked: &str) -> Result<String, Status> {
    let Some(p) = who else {
        return Ok(asked.to_owned());
    };
    let tenant = match (asked, p.tenant.as_str()) {
        ("", "") => None,
        ("", mine) => Some(mine),
        (asked, _) => Some(asked),
    };
    check(who, Access::Read, tenant)?;
    Ok(tenant.unwrap_or("").to_owned())
}

/// The tenant an object counts as for access checks: its own for clusters, routes and alert
/// rules; a Tenant object is its tenant's to read and update (`fleet_wide_op` false) but
/// fleet-wide to create or delete; listeners are fleet-wide.
pub fn object_scope(kind: Kind, tenant: &str, name: &str, fleet_wide_op: bool) -> Option<String> {
    match kind {
        Kind::Tenant if !fleet_wide_op => Some(name.to_owned()),
        k if k.is_tenant_scoped() => Some(tenant.to_owned()),
        _ => None,
    }
}

/// The header that carries the tenant on the data plane (`x-tenant-id`).
pub const TENANT_HEADER: &str = "x-tenant-id";

/// What a tenant-admin may not write even in its own tenant, since it reaches beyond it:
/// - a route must match `x-tenant-id: TENANT` exactly: routes of every tenant share one route
///   table, and hosts are not owned by tenants, so a route by host or path alone could take
///   another tenant's requests;
/// - a cluster may not take endpoints from Kubernetes: the control plane's service account reads
///   EndpointSlices in every namespace, so the namespace is the admin's to choose.
pub fn confine(who: Option<&Principal>, o: &Object) -> Result<(), Status> {
    let Some(p) = who.filter(|p| p.role == Role::TenantAdmin) else {
        return Ok(());
    };
    match &o.spec {
        Spec::Route(r) => {
            let confined = r.match_.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case(TENANT_HEADER) && h.exact.as_deref() == Some(&p.tenant)
            });
            if confined {
                return Ok(());
            }
            Err(Status::permission_denied(format!(
                "route {}/{}: spec.match.headers: a tenant-admin token's routes must match \
                 {{name: {TENANT_HEADER}, exact: {}}} (routes by host or path alone are the admin's)",
                o.meta.tenant, o.meta.name, p.tenant
            )))
        }
        Spec::Cluster(c) if c.kubernetes.is_some() => Err(Status::permission_denied(format!(
            "cluster {}/{}: spec.kubernetes: Kubernetes discovery is the admin's to set up",
            o.meta.tenant, o.meta.name
        ))),
        // Proxy metrics are measured over the whole fleet, and a webhook makes the control plane
        // call any address it can reach.
        Spec::AlertRule(r)
            if matches!(r.metric, AlertMetric::ProxyStale | AlertMetric::ProxyNacked) =>
        {
            Err(Status::permission_denied(format!(
                "alertrule {}/{}: spec.metric: {} is measured over the whole fleet (the admin's)",
                o.meta.tenant,
                o.meta.name,
                r.metric.as_str()
            )))
        }
        Spec::AlertRule(r) if r.webhook.is_some() => Err(Status::permission_denied(format!(
            "alertrule {}/{}: spec.webhook: webhooks are the admin's to set (the control plane calls them)",
            o.meta.tenant, o.meta.name
        ))),
        _ => Ok(()),
    }
}

/// The SHA-256 of a secret, as stored.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new secret: `gw_` and 40 hex digits (160 random bits).
pub fn new_secret() -> String {
    format!("gw_{}", hex::encode(rand::random::<[u8; 20]>()))
}

/// The token table of this replica, by hash.
#[derive(Clone, Debug)]
pub struct Tokens {
    store: Store,
    by_hash: Arc<RwLock<HashMap<String, Principal>>>,
    /// Tokens that a client certificate may stand for, by the certificate's subject CN.
    by_subject: Arc<RwLock<HashMap<String, Principal>>>,
    /// One reload at a time: a periodic read that started before a revocation committed must
    /// not swap its stale table in after the revocation's own reload.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Tokens {
    /// Loads the table from userdb.
    pub async fn load(store: Store) -> Result<Tokens, StoreError> {
        let t = Tokens {
            store,
            by_hash: Arc::default(),
            by_subject: Arc::default(),
            reloading: Arc::default(),
        };
        t.reload().await?;
        Ok(t)
    }

    /// Reads the table again (after a change, and every 2 s for other replicas' changes).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one = self.reloading.lock().await;
        let all = self.store.token_hashes().await?;
        let by_subject = all
            .iter()
            .filter_map(|(_, p, subject)| Some((subject.clone()?, p.clone())))
            .collect();
        let by_hash = all.into_iter().map(|(h, p, _)| (h, p)).collect();
        *self.by_hash.write().unwrap_or_else(|e| e.into_inner()) = by_hash;
        *self.by_subject.write().unwrap_or_else(|e| e.into_inner()) = by_subject;
        Ok(())
    }

    /// Keeps the table fresh until `stop`: every `every`, and at once on a config change of any
    /// replica (a tenant deleted elsewhere takes its tokens with it).
    pub async fn refresh(self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = self.store.subscribe();
        // Config changes come in bursts (registrations, applies): at most one extra reload a
        // second for them; the tick covers the rest.
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = crate::server::stopped(&mut stop) => return,
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if last.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            reload(Some(&self)).await;
            last = tokio::time::Instant::now();
        }
    }

    /// The principal of a bearer secret, if it is a live token.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let map = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
        map.get(&hash(secret)).filter(|p| self.live(p)).cloned()
    }

    /// Whether `p` has not expired.
    fn live(&self, p: &Principal) -> bool {
        p.expires_at_ms.is_none_or(|at| at > self.store.now_ms())
    }

    /// The principal a verified client certificate with subject common name `cn` stands for,
    /// if a live token is bound to it.
    pub fn authenticate_subject(&self, cn: &str) -> Option<Principal> {
        let map = self.by_subject.read().unwrap_or_else(|e| e.into_inner());
        map.get(cn).filter(|p| self.live(p)).cloned()
    }

    /// Whether `p`'s token still works (not revoked, not expired): long calls (a followed event
    /// stream) check again as they go.
    pub fn still_valid(&self, p: &Principal) -> bool {
        let map = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
        map.get(&p.hash) == Some(p) && self.live(p)
    }
}

/// Reloads the token table, if auth is on, after a write that changed tokens (a revocation, a
/// tenant deleted with its tokens), so the next call on this replica sees it.
pub async fn reload(tokens: Option<&Tokens>) {
    if let Some(t) = tokens {
        if let Err(e) = t.reload().await {
            tracing::warn!(error = %e, "reloading API tokens");
        }
    }
}

/// The tonic interceptor in front of the gateway.v1 services: with `--auth` it turns the bearer
/// token into a [`Principal`] on the request, or refuses the call.
#[derive(Clone, Debug)]
pub struct Authenticator {
    tokens: Option<Tokens>,
    refused: Option<prometheus::IntCounter>,
}

impl Authenticator {
    /// `None`: auth is off, every call passes without a principal.
    pub fn new(tokens: Option<Tokens>) -> Authenticator {
        Authenticator {
            tokens,
            refused: None,
        }
    }

    /// Counts refused calls in `refused`.
    pub fn with_counter(mut self, refused: prometheus::IntCounter) -> Authenticator {
        self.refused = Some(refused);
        self
    }

    fn refuse(&self, message: impl Into<String>) -> Status {
        if let Some(c) = &self.refused {
            c.inc();
        }
        Status::unauthenticated(message)
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(req);
        };
        let header = req.metadata().get("authorization");
        let Some(header) = header else {
            // No bearer token: a verified client certificate (mTLS) bound to a token will do.
            const NEEDED: &str = "a bearer token is required (authorization: Bearer TOKEN)";
            return match client_cert(&req) {
                ClientCert::Cn(cn) => match tokens.authenticate_subject(&cn) {
                    Some(p) => {
                        req.extensions_mut().insert(p);
                        Ok(req)
                    }
                    None => Err(self.refuse(format!(
                        "{NEEDED}; the client certificate (subject {cn:?}) stands for no live \
                         token (an admin can bind one: gwctl tokens create NAME --role ROLE \
                         --subject {cn:?})"
                    ))),
                },
                ClientCert::Unusable(why) => Err(self.refuse(format!(
                    "{NEEDED}; the client certificate cannot stand for a token: {why}"
                ))),
                ClientCert::Absent => Err(self.refuse(NEEDED)),
            };
        };
        let secret = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match secret.and_then(|s| tokens.authenticate(s)) {
            Some(p) => {
                req.extensions_mut().insert(p);
                Ok(req)
            }
            None => Err(self.refuse("the token is not valid (unknown, revoked or expired)")),
        }
    }
}

/// The subject common name of the client certificate the TLS handshake verified, if any.
/// (The TLS layer verified it against `--tls-client-ca`; without one, clients send none.) Only a
/// certificate with exactly one subject common name, readable as text, names a caller.
fn client_cert<T>(req: &Request<T>) -> ClientCert {
    match req.peer_certs().and_then(|c| c.first().cloned()) {
        Some(leaf) => caller_of(leaf.as_ref()),
        None => ClientCert::Absent,
    }
}

/// What a (verified) leaf certificate, DER, says about the caller.
fn caller_of(der: &[u8]) -> ClientCert {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return ClientCert::Unusable("it could not be parsed");
    };
    let mut cns = cert.subject().iter_common_name();
    match (cns.next(), cns.next()) {
        (Some(cn), None) => match cn.as_str() {
            Ok(s) => ClientCert::Cn(s.to_owned()),
            Err(_) => ClientCert::Unusable("its subject common name is not text"),
        },
        (None, _) => ClientCert::Unusable("its subject has no common name"),
        (Some(_), Some(_)) => ClientCert::Unusable("its subject has more than one common name"),
    }
}

/// What the client certificate of a call says about the caller.
#[derive(Debug, PartialEq)]
enum ClientCert {
    /// None was presented (no mTLS).
    Absent,
    /// Its one subject common name.
    Cn(String),
    /// It cannot name a caller, and why.
    Unusable(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, tenant: &str) -> Principal {
        Principal {
            name: "t".into(),
            role,
            tenant: tenant.into(),
            expires_at_ms: None,
            hash: String::new(),
        }
    }

    #[test]
    fn roles_and_tenants_decide_access() {
        use Access::{Read, Write};
        let admin = p(Role::Admin, "");
        let viewer = p(Role::Viewer, "");
        let acme_viewer = p(Role::Viewer, "acme");
        let acme = p(Role::TenantAdmin, "acme");
        for (who, access, tenant, ok) in [
            (&admin, Write, None, true),
            (&admin, Write, Some("acme"), true),
            (&viewer, Read, None, true),
            (&viewer, Read, Some("acme"), true),
            (&viewer, Write, Some("acme"), false),
            (&acme_viewer, Read, Some("acme"), true),
            (&acme_viewer, Read, Some("globex"), false),
            (&acme_viewer, Read, None, false),
            (&acme, Write, Some("acme"), true),
            (&acme, Read, Some("acme"), true),
            (&acme, Write, Some("globex"), false),
            (&acme, Read, Some("globex"), false),
            (&acme, Read, None, false),
            (&acme, Write, None, false),
        ] {
            assert_eq!(
                who.allows(access, tenant),
                ok,
                "{who:?} {access:?} {tenant:?}"
            );
        }
    }

    #[test]
    fn lists_narrow_to_the_tokens_tenant() {
        let acme = p(Role::TenantAdmin, "acme");
        assert_eq!(list_scope(Some(&acme), "").unwrap(), "acme");
        assert_eq!(list_scope(Some(&acme), "acme").unwrap(), "acme");
        let denied = list_scope(Some(&acme), "globex").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("token t (tenant-admin of tenant acme) may not read tenant globex"),
            "{}",
            denied.message()
        );
        assert_eq!(list_scope(Some(&p(Role::Viewer, "")), "").unwrap(), "");
        assert_eq!(list_scope(None, "").unwrap(), "");
    }

    #[test]
    fn secrets_are_long_random_and_stored_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("gw_") && a.len() == 43, "{a}");
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn a_certificate_names_a_caller_by_its_one_common_name() {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let der = |cns: &[&str]| {
            let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            for cn in cns {
                p.distinguished_name.push(DnType::CommonName, *cn);
            }
            let key = KeyPair::generate().unwrap();
            p.self_signed(&key).unwrap().der().to_vec()
        };
        assert_eq!(
            caller_of(&der(&["ops.example.com"])),
            ClientCert::Cn("ops.example.com".into())
        );
        assert!(
            matches!(caller_of(&der(&[])), ClientCert::Unusable(m) if m.contains("no common name"))
        );
        assert!(matches!(
            caller_of(b"not a certificate"),
            ClientCert::Unusable(_)
        ));
    }
}
