//! A route's `requestHeaders` / `responseHeaders` (Envoy's `request_headers_to_add` /
//! `_remove` and `response_headers_to_add` / `_remove`) through a stock Envoy 1.40 and through
//! gw-proxy fed the same manifest: the upstream sees the same request headers (set replaces,
//! add appends a line, remove removes) and the client the same response headers, over HTTP/1.1
//! and HTTP/2.

#![allow(clippy::unwrap_used)]

use gw_e2e::echo;
use gw_e2e::serving::on_both_with;
use std::net::SocketAddr;

/// `GET path` over HTTP/1.1 or HTTP/2 with the test's request headers.
async fn get(addr: SocketAddr, path: &str, h2: bool) -> echo::Seen {
    let sent = [
        ("x-set", "0"),
        ("x-add", "0"),
        ("x-gone", "0"),
        ("x-kept", "k"),
        // Dropped by both (Envoy's default `forward_client_cert_details: SANITIZE`).
        ("x-forwarded-client-cert", "By=spiffe://admin"),
        // Dropped by both (an edge Envoy's `x-envoy-*` from an external client), which say
        // who the client is in `x-envoy-external-address` instead.
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-external-address", "10.9.9.9"),
        ("x-envoy-original-host", "spoofed.test"),
        // Kept by both: not one of those an edge Envoy drops (Istio's peer metadata, say).
        ("x-envoy-peer-metadata", "p"),
        // Kept by both (the control plane asks Envoy to keep a client's request id).
        ("x-request-id", "client-id-1"),
    ];
    echo::get(addr, "headers.test", path, &sent, h2)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_change_route_headers_alike() {
    let up = echo::upstream().await.unwrap().port();
    let dead = gw_e2e::dead_port();
    let dead_port = dead.port();
    on_both_with(
        "route-headers",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            format!(
                "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: echo, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: h, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /h}}, cluster: echo,\n  \
                 requestHeaders: {{set: {{x-set: '1', x-new: n}}, add: {{x-add: '2'}}, remove: [x-gone]}},\n  \
                 responseHeaders: {{set: {{x-frame-options: DENY}}, add: {{x-from-upstream: p}}, remove: [x-upstream-only]}}}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: plain, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /plain}}, cluster: echo}}\n\
                 ---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: gone, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: {dead_port}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: dead, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /dead}}, cluster: gone,\n  \
                 responseHeaders: {{set: {{x-frame-options: DENY}}}}}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: retired, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /retired}}, directResponse: {{status: 410, body: \"gone\\n\"}},\n  \
                 responseHeaders: {{set: {{x-frame-options: DENY}}}}}}\n"
            )
        },
        |who, addr| async move {
            for h2 in [false, true] {
                let got = get(addr, "/h/x", h2).await;
                let what = format!("{who} (HTTP/2: {h2}): {got:?}");
                let find = |n: &str| got.header(n);
                assert_eq!(got.status, 200, "{what}");
                assert_eq!(find("x-seen-x-set"), Some("1"), "set: {what}");
                assert_eq!(find("x-seen-x-new"), Some("n"), "set, new: {what}");
                assert_eq!(find("x-seen-x-add"), Some("0 | 2"), "add: {what}");
                assert_eq!(find("x-seen-x-gone"), None, "remove: {what}");
                assert_eq!(find("x-seen-x-kept"), Some("k"), "{what}");
                assert_eq!(find("x-seen-x-forwarded-client-cert"), None, "{what}");
                assert_eq!(find("x-seen-x-envoy-retry-on"), None, "{what}");
                assert_eq!(find("x-seen-x-envoy-original-host"), None, "{what}");
                assert_eq!(find("x-seen-x-envoy-peer-metadata"), Some("p"), "{what}");
                assert_eq!(find("x-seen-x-envoy-external-address"), Some("127.0.0.1"), "{what}");
                assert_eq!(find("x-seen-x-request-id"), Some("client-id-1"), "{what}");
                assert_eq!(find("x-frame-options"), Some("DENY"), "{what}");
                assert_eq!(find("x-from-upstream"), Some("u | p"), "{what}");
                assert_eq!(find("x-upstream-only"), None, "{what}");
                // A route without changes passes both ways as they are.
                let got = get(addr, "/plain/x", h2).await;
                let find = |n: &str| got.header(n);
                assert_eq!(find("x-seen-x-set"), Some("0"), "{who}");
                assert_eq!(find("x-seen-x-forwarded-client-cert"), None, "{who}");
                assert_eq!(find("x-seen-x-gone"), Some("0"), "{who}");
                assert_eq!(find("x-upstream-only"), Some("o"), "{who}");
                assert_eq!(find("x-frame-options"), Some("SAMEORIGIN"), "{who}");
                // The proxy's own answer (no upstream to be had) gets the route's changes too.
                let got = get(addr, "/dead/x", h2).await;
                assert_eq!(got.status, 503, "{who}: {got:?}");
                assert_eq!(got.header("x-frame-options"), Some("DENY"), "{who}: {got:?}");
                // A direct response: the status, the body as text, the route's header changes.
                let got = get(addr, "/retired/x", h2).await;
                assert_eq!(got.status, 410, "{who}: {got:?}");
                assert_eq!(got.header("content-type"), Some("text/plain"), "{who}: {got:?}");
                assert_eq!(got.header("content-length"), Some("5"), "{who}: {got:?}");
                assert_eq!(got.header("x-frame-options"), Some("DENY"), "{who}: {got:?}");
                assert_eq!(got.header("x-from-upstream"), None, "{who}: {got:?}");
            }
            // To a gRPC client, both answer the direct response as gRPC: 200, grpc-status
            // UNKNOWN, the body as the message (percent-encoded), the route's headers kept.
            let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
            let got = echo::request(addr, "headers.test", ("POST", "/retired/x"), &grpc, "", true)
                .await
                .unwrap();
            assert_eq!(got.status, 200, "{who}: {got:?}");
            assert_eq!(got.header("content-type"), Some("application/grpc"), "{who}: {got:?}");
            assert_eq!(got.header("grpc-status"), Some("2"), "{who}: {got:?}");
            assert_eq!(got.header("grpc-message"), Some("gone%0A"), "{who}: {got:?}");
            assert_eq!(got.header("x-frame-options"), Some("DENY"), "{who}: {got:?}");
        },
    )
    .await;
}
