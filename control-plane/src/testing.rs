//! Test support (feature `test-util`): real databases for tests, one fresh database per test.
//!
//! PostgreSQL comes from `GW_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
//! When it cannot be reached, tests skip with a loud message — unless `CI=true`, where a missing
//! database is a failure, so CI can never pass by skipping.

use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};

/// Admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("GW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether this run must not skip tests for missing dependencies.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
#[derive(Debug)]
pub struct PgTestDb {
    /// URL of the database.
    pub url: String,
    name: String,
    admin: String,
}

impl PgTestDb {
    /// Creates a database named after `label`. `None` (after printing why) when PostgreSQL is not
    /// reachable outside CI; panics in CI.
    pub async fn create(label: &str) -> Option<PgTestDb> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin = postgres_admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if in_ci() {
                    panic!("CI=true but PostgreSQL at {admin} is unreachable: {e}");
                }
                eprintln!("\n*** SKIPPING PostgreSQL test {label}: {admin} unreachable: {e} ***\n");
                return None;
            }
        };
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!(
            "gw_t_{}_{}_{}",
            &clean[..clean.len().min(30)],
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await
            .ok()?;
        if let Err(e) = conn
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
        {
            panic!("creating test database {name}: {e}");
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(PgTestDb {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let _ = c
                            .execute(
                                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A throwaway PKI for TLS tests: a CA, a server certificate for `localhost` and `127.0.0.1`,
/// and a client certificate, as PEM files in a temporary directory (removed on drop).
pub struct TestPki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates the CA and both certificates (ECDSA P-256).
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("writing a PEM file");
        };
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "gw test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        write("ca.pem", ca.self_signed(&ca_key).expect("the CA").pem());
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("a key");
            let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
            p.distinguished_name.push(DnType::CommonName, name);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).expect("a certificate");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        };
        leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
        leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
        TestPki { dir, issuer }
    }

    /// A server certificate from the CA for the DNS `names` (wildcards allowed), its common name
    /// the first: the certificate and its key, PEM.
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().expect("a key");
        let mut p =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("gw test"),
        );
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// The CA as a rustls trust store.
    pub fn roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.path("ca.pem")).expect("the CA file") {
            roots.add(c.expect("the CA")).expect("a root");
        }
        roots
    }

    /// A rustls client config trusting the CA, offering `alpn` (none: no ALPN).
    pub fn rustls_client(&self, alpn: &[&str]) -> rustls::ClientConfig {
        let roots = self.roots();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        cfg
    }

    /// A file of the PKI: `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`,
    /// `client-key.pem`.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// A rustls server config with the server certificate, offering `h2` and `http/1.1` by
    /// ALPN: a TLS upstream for tests of proxies.
    pub fn rustls_server(&self) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path("server.pem"))
                .and_then(|i| i.collect::<Result<_, _>>())
                .expect("the server certificate");
        let key = PrivateKeyDer::from_pem_file(self.path("server-key.pem")).expect("its key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server config");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg
    }

    /// The control plane's TLS: the server certificate, and client certificates required when
    /// `mtls`.
    pub fn server_tls(&self, mtls: bool) -> crate::server::TlsFiles {
        crate::server::TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server-key.pem"),
            client_ca: mtls.then(|| self.path("ca.pem")),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A port on 127.0.0.1 that nothing listens on now, for a listener the test starts later.
///
/// Ports come from 20000–31999, below the kernel's ephemeral range (32768 and up by default):
/// a listener bound to port 0 or an outgoing connection elsewhere in the run is never handed
/// one of them in between. Each call in a process tries the next port, from a start that
/// depends on the process id, and returns the first one that binds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    (0..SPAN)
        .map(|_| FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN)
        .map(|p| u16::try_from(p).expect("below 32000"))
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 20000-31999")
}

/// A port nothing answers on for as long as the value lives: the socket is bound but never
/// listens, so connections to it are refused, and no other test's listener can be handed the
/// same port (as a port bound and released, like [`free_port`]'s, can be).
pub struct DeadPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl DeadPort {
    /// The port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// See [`DeadPort`].
pub fn dead_port() -> DeadPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("its address").port();
    DeadPort {
        _socket: socket,
        port,
    }
}
