//! The test environment: a real control plane in-process on 127.0.0.1:0 (SQLite in memory) and
//! the real `gwctl` binary run against it.

use assert_cmd::Command;
use gw_control_plane::server::{Config, ControlPlane};
use std::path::{Path, PathBuf};

/// A control plane and a scratch directory.
pub struct Env {
    pub cp: ControlPlane,
    pub dir: tempfile::TempDir,
}

/// What a gwctl run printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(Config::for_tests("sqlite::memory:")).await
    }

    /// With `--auth` and an admin token.
    pub async fn start_with_auth(admin_token: &str) -> Env {
        let mut cfg = Config::for_tests("sqlite::memory:");
        cfg.auth = true;
        cfg.admin_token = Some(admin_token.into());
        Self::start_with(cfg).await
    }

    /// With TLS on the gRPC port (client certificates required when `mtls`).
    pub async fn start_with_tls(pki: &gw_control_plane::testing::TestPki, mtls: bool) -> Env {
        let mut cfg = Config::for_tests("sqlite::memory:");
        cfg.tls = Some(pki.server_tls(mtls));
        Self::start_with(cfg).await
    }

    /// With client certificates required (mTLS), `--auth` and an admin token.
    pub async fn start_with_mtls_auth(
        pki: &gw_control_plane::testing::TestPki,
        admin_token: &str,
    ) -> Env {
        let mut cfg = Config::for_tests("sqlite::memory:");
        cfg.tls = Some(pki.server_tls(true));
        cfg.auth = true;
        cfg.admin_token = Some(admin_token.into());
        Self::start_with(cfg).await
    }

    async fn start_with(cfg: Config) -> Env {
        let cp = ControlPlane::start(cfg).await.unwrap();
        Env {
            cp,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn server(&self) -> String {
        format!("http://{}", self.cp.grpc_addr())
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs gwctl against this control plane.
    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, "").await
    }

    /// Runs gwctl with `GW_TOKEN` set.
    pub async fn run_as(&self, token: &str, args: &[&str]) -> Out {
        self.run_full(args, "", Some(token)).await
    }

    /// Runs gwctl with `stdin` as its standard input.
    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        self.run_full(args, stdin, None).await
    }

    async fn run_full(&self, args: &[&str], stdin: &str, token: Option<&str>) -> Out {
        let server = self.server();
        let config = self.dir.path().join("config.yaml");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.to_owned();
        let token = token.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::cargo_bin("gwctl").unwrap();
            cmd.env("GW_SERVER", server)
                .env("GW_CONFIG", config)
                .env("NO_COLOR", "1")
                .env_remove("GW_TOKEN");
            if let Some(t) = token {
                cmd.env("GW_TOKEN", t);
            }
            let out = cmd.args(&args).write_stdin(stdin).output().unwrap();
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }
}

/// examples/quickstart.yaml.
pub fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml")
}

/// examples/quickstart.yaml, as an argument.
pub fn q() -> String {
    quickstart().display().to_string()
}
