//! TLS and mTLS on the control plane's gRPC port: gw-proxy and a stock Envoy 1.40 get their
//! config over mTLS and route; a plaintext client, and a TLS client without a certificate, are
//! refused.

#![allow(clippy::unwrap_used)]

use gw_control_plane::server::{Config, ControlPlane};
use gw_control_plane::testing::TestPki;
use gw_e2e::envoy::{self, Envoy, Mode, XdsTls as EnvoyTls};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::tenants_client::TenantsClient;
use gw_proxy::server::{Proxy, ProxyConfig, XdsTls};
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const LIMIT: Duration = Duration::from_secs(20);

fn manifest(listener: u16, up: &Upstream) -> String {
    format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{nodeCluster: edge, address: 127.0.0.1, port: {listener}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users, tenant: acme}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: users, tenant: acme}}\nspec: {{match: {{hosts: [api.acme.test], pathPrefix: /users}}, cluster: users}}\n",
        up.port()
    )
}

async fn routes_to(at: SocketAddr, name: &str) {
    wait::until("routing over the mTLS-fed config", LIMIT, || async {
        let r = http::get(at, "api.acme.test", "/users/1").await.ok()?;
        (r.status == 200 && r.body == name).then_some(())
    })
    .await
    .unwrap();
}

async fn tenants_call(url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let mut ep = Channel::from_shared(url).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let ch = ep.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    TenantsClient::new(ch)
        .list_tenants(pb::ListRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn proxies_and_envoy_take_config_over_mtls() {
    let pki = TestPki::new();
    let mut cfg = Config::for_tests("sqlite::memory:");
    cfg.tls = Some(pki.server_tls(true));
    let cp = ControlPlane::start(cfg).await.unwrap();
    let up = Upstream::start("a").await.unwrap();
    let listener = free_port();
    control::apply(&cp, &manifest(listener, &up)).await.unwrap();
    let port = cp.grpc_addr().port();

    // gw-proxy with its client certificate.
    let mut pcfg = ProxyConfig::for_tests(Some(format!("https://localhost:{port}")), "tls-gw");
    pcfg.node_cluster = "edge".into();
    pcfg.xds_tls = Some(XdsTls {
        ca: pki.path("ca.pem"),
        identity: Some((pki.path("client.pem"), pki.path("client-key.pem"))),
        server_name: None,
    });
    let gw = Proxy::start(pcfg).await.unwrap();
    routes_to(gw.listen_addr(), "a").await;

    // A stock Envoy, over mTLS as well.
    if let Some(bin) = envoy::binary() {
        let tls = EnvoyTls {
            ca: pki.path("ca.pem"),
            cert: pki.path("client.pem"),
            key: pki.path("client-key.pem"),
        };
        let envoy = Envoy::start_tls(
            &bin,
            cp.grpc_addr(),
            "tls-envoy",
            "edge",
            Mode::Delta,
            Some(&tls),
        )
        .await
        .unwrap();
        let at = SocketAddr::from(([127, 0, 0, 1], listener));
        let r = wait::until("Envoy routing over the mTLS-fed config", LIMIT, || async {
            let r = http::get(at, "api.acme.test", "/users/1").await.ok()?;
            (r.status == 200).then_some(r)
        })
        .await;
        assert!(r.is_ok(), "envoy log:\n{}", envoy.log());
        assert_eq!(r.unwrap().body, "a");
    }

    // Plaintext, and TLS without a client certificate, are refused.
    let url = format!("https://localhost:{port}");
    let ca = Certificate::from_pem(std::fs::read(pki.path("ca.pem")).unwrap());
    let plain = tenants_call(format!("http://127.0.0.1:{port}"), None).await;
    assert!(plain.is_err(), "plaintext to a TLS port: {plain:?}");
    let anonymous = tenants_call(
        url.clone(),
        Some(ClientTlsConfig::new().ca_certificate(ca.clone())),
    )
    .await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let identity = Identity::from_pem(
        std::fs::read(pki.path("client.pem")).unwrap(),
        std::fs::read(pki.path("client-key.pem")).unwrap(),
    );
    let mutual = tenants_call(
        url,
        Some(ClientTlsConfig::new().ca_certificate(ca).identity(identity)),
    )
    .await;
    assert_eq!(mutual, Ok(()));

    gw.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test]
async fn an_https_control_plane_needs_a_ca_and_tls_needs_https() {
    let pki = TestPki::new();
    let tls = XdsTls {
        ca: pki.path("ca.pem"),
        identity: None,
        server_name: None,
    };
    let mut cfg = ProxyConfig::for_tests(Some("https://localhost:1".into()), "x");
    let err = Proxy::start(cfg.clone()).await.err().unwrap().to_string();
    assert!(
        err.contains("an https control plane needs --xds-ca"),
        "{err}"
    );
    cfg.xds = Some("http://127.0.0.1:1".into());
    cfg.xds_tls = Some(tls);
    let err = Proxy::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("TLS options need an https:// URL"), "{err}");
}
