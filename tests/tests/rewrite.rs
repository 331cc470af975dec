//! A route's `rewrite: {prefix}` (Envoy's RouteAction `prefix_rewrite`) through a stock Envoy
//! 1.40 and through gw-proxy fed the same manifest: the same path reaches the upstream (the
//! matched prefix replaced literally, the rest and the query kept; an exact path replaced whole),
//! with the original in `x-envoy-original-path`, over HTTP/1.1 and HTTP/2; and `rewrite: {host}`
//! (Envoy's `host_rewrite_literal`): the same `Host` reaches the upstream.

#![allow(clippy::unwrap_used)]

use gw_e2e::echo;
use gw_e2e::serving::on_both_with;
use std::net::SocketAddr;

/// `GET path` over HTTP/1.1 or HTTP/2 with a client's own `x-envoy-original-path`: the status,
/// the path the upstream got, and the `x-envoy-original-path` it got (`-`: none).
async fn get(addr: SocketAddr, path: &str, h2: bool) -> (u16, String, String) {
    let seen = echo::get(
        addr,
        "rewrite.test",
        path,
        // A client's own: dropped by both, rewritten or not.
        &[("x-envoy-original-path", "/spoofed")],
        h2,
    )
    .await
    .unwrap();
    let h = |n: &str| seen.header(n).map(str::to_owned);
    (
        seen.status,
        h("x-seen-path").unwrap_or_default(),
        h("x-seen-x-envoy-original-path").unwrap_or_else(|| "-".into()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_rewrite_prefixes_alike() {
    let up = echo::upstream().await.unwrap().port();
    let route = |name: &str, path: &str, rest: &str| {
        format!(
            "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: acme}}\n\
             spec: {{match: {{{path}}}, cluster: echo{rest}}}\n"
        )
    };
    on_both_with(
        "rewrite",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            [
                format!(
                    "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: echo, tenant: acme}}\n\
                     spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}\n"
                ),
                route("api", "pathPrefix: /api/", ", rewrite: {prefix: /}"),
                route("v1", "pathPrefix: /v1", ", rewrite: {prefix: /v2}"),
                route("old", "path: /old", ", rewrite: {prefix: /new/place}"),
                route("plain", "pathPrefix: /plain", ""),
                route(
                    "hosted",
                    "pathPrefix: /hosted",
                    ", rewrite: {host: 'users.internal:8080'}",
                ),
                route(
                    "both",
                    "pathPrefix: /both/",
                    ", rewrite: {prefix: /, host: users.internal}",
                ),
            ]
            .concat()
        },
        |who, addr| async move {
            // (asked, sent upstream, x-envoy-original-path)
            let cases = [
                ("/api/users?page=2", "/users?page=2", "/api/users?page=2"),
                ("/api/", "/", "/api/"),
                ("/v1/items", "/v2/items", "/v1/items"),
                ("/v1", "/v2", "/v1"),
                ("/v1x", "/v2x", "/v1x"),
                ("/old?q=a%20b", "/new/place?q=a%20b", "/old?q=a%20b"),
                ("/plain/x", "/plain/x", "-"),
            ];
            for h2 in [false, true] {
                for (asked, sent, original) in cases {
                    let got = get(addr, asked, h2).await;
                    assert_eq!(
                        got,
                        (200, sent.to_owned(), original.to_owned()),
                        "{who}: {asked} (HTTP/2: {h2})"
                    );
                }
                // The host the upstream gets: rewritten, with or without the path; the client's
                // otherwise. No x-forwarded-host either way.
                for (asked, path, host) in [
                    ("/hosted/x?q=1", "/hosted/x?q=1", "users.internal:8080"),
                    ("/both/x", "/x", "users.internal"),
                    ("/plain/x", "/plain/x", "rewrite.test"),
                ] {
                    for body in ["", "some body"] {
                        let what = format!("{who}: {asked} (HTTP/2: {h2}, body {body:?})");
                        let seen = echo::request(addr, "rewrite.test", ("POST", asked), &[], body, h2)
                            .await
                            .unwrap();
                        assert_eq!(seen.status, 200, "{what}");
                        assert_eq!(seen.header("x-seen-path"), Some(path), "{what}");
                        assert_eq!(seen.header("x-seen-host"), Some(host), "{what}");
                        assert_eq!(seen.header("x-seen-x-forwarded-host"), None, "{what}");
                        // The client's host, when a route rewrote it (Envoy's).
                        let original = (host != "rewrite.test").then_some("rewrite.test");
                        assert_eq!(
                            seen.header("x-seen-x-envoy-original-host"),
                            original,
                            "{what}"
                        );
                    }
                }
            }
        },
    )
    .await;
}
