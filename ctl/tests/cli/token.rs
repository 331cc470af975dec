//! Tokens as an operator uses them, against a real control plane started with `--auth`: the
//! bearer token from `--token`, `GW_TOKEN` or the config file; `tokens create|list|revoke`;
//! `whoami`; what a tenant-scoped token may not do.

use super::env::{quickstart, Env};

const ADMIN: &str = "admin-secret-for-tests-0123";

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_flag_env_or_config_file_and_their_roles() {
    let env = Env::start_with_auth(ADMIN).await;

    let out = env.run(&["get", "tenants"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: listing tenants: not authenticated (a bearer token is required (authorization: Bearer TOKEN)): pass --token, set GW_TOKEN or run `gwctl config set-token`"
    );
    let bad = env.run(&["--token", "gw_wrong", "get", "tenants"]).await;
    assert!(
        bad.stderr
            .contains("the token is not valid (unknown, revoked or expired)"),
        "{bad:?}"
    );

    let ok = |o: &super::env::Out| (o.code, o.stderr.trim().to_owned());
    let none = (0, "No tenants found.".to_owned());
    assert_eq!(
        ok(&env.run(&["--token", ADMIN, "get", "tenants"]).await),
        none
    );
    assert_eq!(ok(&env.run_as(ADMIN, &["get", "tenants"]).await), none);
    // The flag wins over the environment.
    assert_eq!(
        env.run_as("gw_wrong", &["--token", ADMIN, "get", "tenants"])
            .await
            .code,
        0
    );
    assert_eq!(env.run(&["config", "set-token", ADMIN]).await.code, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let config = env.dir.path().join("config.yaml");
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    // From here on the config file's admin token is used unless GW_TOKEN says otherwise.
    assert_eq!(ok(&env.run(&["get", "tenants"]).await), none);
    let q = quickstart();
    let applied = env.run(&["apply", "-f", q.to_str().unwrap()]).await;
    assert_eq!(applied.code, 0, "{applied:?}");

    // A token for CI that deploys tenant acme, shown once on stdout.
    let made = env
        .run(&[
            "tokens",
            "create",
            "ci",
            "--role",
            "tenant-admin",
            "-t",
            "acme",
            "--ttl",
            "30d",
        ])
        .await;
    assert_eq!(made.code, 0, "{made:?}");
    let ci = made.stdout.trim().to_owned();
    assert!(ci.starts_with("gw_") && ci.len() == 43, "{made:?}");
    assert!(
        made.stderr
            .contains("token ci created (tenant-admin of acme, expires "),
        "{made:?}"
    );
    let listed = env.run(&["tokens", "list"]).await;
    let rows: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        vec!["NAME", "ROLE", "TENANT", "CREATED", "EXPIRES", "SUBJECT"]
    );
    assert_eq!(&rows[1][..3], ["admin", "admin", "*"]);
    assert_eq!(rows[1][4..], ["never", "-"]);
    assert_eq!(&rows[2][..3], ["ci", "tenant-admin", "acme"]);
    assert!(!listed.stdout.contains(&ci), "secrets are never listed");

    assert_eq!(
        env.run_as(&ci, &["whoami"]).await.stdout.trim(),
        "ci (tenant-admin of tenant acme)"
    );
    let routes = env.run_as(&ci, &["get", "routes", "-t", "acme"]).await;
    assert_eq!(routes.code, 0, "{routes:?}");
    assert!(routes.stdout.contains("users"), "{routes:?}");
    let denied = env.run_as(&ci, &["get", "listeners"]).await;
    assert_eq!(denied.code, 1);
    assert_eq!(
        denied.stderr.trim(),
        "error: listing listeners: permission denied: token ci (tenant-admin of tenant acme) may not read fleet-wide objects"
    );
    let denied = env
        .run_as(&ci, &["tokens", "create", "mine", "--role", "admin"])
        .await;
    assert!(denied.stderr.contains("permission denied"), "{denied:?}");

    assert_eq!(
        env.run(&["tokens", "revoke", "ci"]).await.stdout.trim(),
        "token ci revoked"
    );
    let gone = env.run_as(&ci, &["whoami"]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("not authenticated"), "{gone:?}");
    let again = env.run(&["tokens", "revoke", "ci"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("not found"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn whoami_says_when_auth_is_off() {
    let env = Env::start().await;
    let out = env.run(&["whoami"]).await;
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        "auth is off on this control plane: every caller may do everything (start it with --auth)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gwctl_speaks_tls_and_mtls() {
    let pki = gw_control_plane::testing::TestPki::new();
    let env = Env::start_with_tls(&pki, true).await;
    let server = format!("https://localhost:{}", env.cp.grpc_addr().port());
    let path = |n: &str| pki.path(n).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client-key.pem"));
    let ok = env
        .run(&[
            "--server", &server, "--ca", &ca, "--cert", &cert, "--key", &key, "get", "tenants",
        ])
        .await;
    assert_eq!(
        (ok.code, ok.stderr.trim()),
        (0, "No tenants found."),
        "{ok:?}"
    );
    // An https server and no CA: gwctl will not send a token to an unverified server.
    let out = env.run(&["--server", &server, "whoami"]).await;
    assert!(out.stderr.contains("needs --ca"), "{out:?}");
    // Without its certificate the control plane does not let it in; with TLS flags on a
    // plaintext URL gwctl says what is wrong.
    let anonymous = env
        .run(&["--server", &server, "--ca", &ca, "get", "tenants"])
        .await;
    assert_eq!(anonymous.code, 1, "{anonymous:?}");
    assert!(
        anonymous.stderr.starts_with(&format!(
            "error: cannot reach the control plane at {server}"
        )),
        "{anonymous:?}"
    );
    assert!(
        anonymous
            .stderr
            .trim_end()
            .ends_with("if it requires client certificates (mTLS), pass --cert and --key"),
        "{anonymous:?}"
    );
    let plain = format!("http://127.0.0.1:{}", env.cp.grpc_addr().port());
    let mixed = env
        .run(&["--server", &plain, "--ca", &ca, "get", "tenants"])
        .await;
    assert_eq!(
        mixed.stderr.trim(),
        format!("error: --server {plain}: --ca, --cert and --key need an https:// server")
    );
}

#[tokio::test]
async fn a_client_certificate_bound_to_a_token_needs_no_bearer_token() {
    let pki = gw_control_plane::testing::TestPki::new();
    let admin = "admin-secret-0123456789abcdef";
    let env = Env::start_with_mtls_auth(&pki, admin).await;
    let server = format!("https://localhost:{}", env.cp.grpc_addr().port());
    let path = |n: &str| pki.path(n).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client-key.pem"));
    let tls = [
        "--server", &server, "--ca", &ca, "--cert", &cert, "--key", &key,
    ];
    let with = |args: &[&'static str]| -> Vec<&str> {
        tls.iter().copied().chain(args.iter().copied()).collect()
    };
    // The certificate (subject CN "client") stands for no token yet: refused.
    let out = env.run(&with(&["whoami"])).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not authenticated"), "{out:?}");
    assert!(out.stderr.contains("client certificate"), "{out:?}");
    // The admin binds a viewer token to it (an empty subject is refused before any call).
    let create = |subject: &'static str| {
        with(&[
            "tokens",
            "create",
            "ops",
            "--role",
            "viewer",
            "--subject",
            subject,
        ])
    };
    let refused = env.run_as(admin, &create("")).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("--subject"), "{refused:?}");
    let made = env.run_as(admin, &create("client")).await;
    assert_eq!(made.code, 0, "{made:?}");
    // Now the certificate alone is the token: who it is, what it may read, what it may not.
    let me = env.run(&with(&["whoami"])).await;
    assert_eq!(me.code, 0, "{me:?}");
    assert_eq!(me.stdout.trim(), "ops (viewer)", "{me:?}");
    assert_eq!(env.run(&with(&["get", "tenants"])).await.code, 0);
    let denied = env.run(&with(&["tokens", "list"])).await;
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains("permission denied"), "{denied:?}");
    let listed = env.run_as(admin, &with(&["tokens", "list"])).await;
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("ops"))
        .unwrap_or_default();
    assert!(row.trim_end().ends_with("client"), "{listed:?}");
    // Revoked: the certificate stands for nothing again.
    let revoked = env.run_as(admin, &with(&["tokens", "revoke", "ops"])).await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert_eq!(env.run(&with(&["whoami"])).await.code, 1);
}
