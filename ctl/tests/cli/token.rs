//! The bearer token reaches the server as `authorization: Bearer …`, from `--token`, `GW_TOKEN`
//! or the config file; a refusal says how to give one. A stand-in Tenants server checks it, since
//! the control plane does not enforce tokens yet.

use assert_cmd::Command;
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::tenants_server::{Tenants, TenantsServer};
use tonic::{Request, Response, Status};

const TOKEN: &str = "s3cr3t";

struct Guarded;

fn check<T>(r: &Request<T>) -> Result<(), Status> {
    match r.metadata().get("authorization").map(|v| v.to_str()) {
        Some(Ok(v)) if v == format!("Bearer {TOKEN}") => Ok(()),
        _ => Err(Status::unauthenticated("missing or invalid token")),
    }
}

#[tonic::async_trait]
impl Tenants for Guarded {
    async fn create_tenant(
        &self,
        r: Request<pb::Tenant>,
    ) -> Result<Response<pb::TenantResponse>, Status> {
        check(&r)?;
        Err(Status::unimplemented(""))
    }
    async fn update_tenant(
        &self,
        r: Request<pb::Tenant>,
    ) -> Result<Response<pb::TenantResponse>, Status> {
        check(&r)?;
        Err(Status::unimplemented(""))
    }
    async fn get_tenant(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::Tenant>, Status> {
        check(&r)?;
        Err(Status::not_found("tenant x not found"))
    }
    async fn list_tenants(
        &self,
        r: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        check(&r)?;
        Ok(Response::new(pb::ListTenantsResponse::default()))
    }
    async fn delete_tenant(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        check(&r)?;
        Err(Status::unimplemented(""))
    }
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TenantsServer::new(Guarded))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn gwctl(
    server: &str,
    config: &std::path::Path,
    env_token: Option<&str>,
    args: &[&str],
) -> (i32, String) {
    let mut cmd = Command::cargo_bin("gwctl").unwrap();
    cmd.env("GW_SERVER", server)
        .env("GW_CONFIG", config)
        .env_remove("GW_TOKEN")
        .args(args);
    if let Some(t) = env_token {
        cmd.env("GW_TOKEN", t);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn token_from_flag_env_or_config_file() {
    let server = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");

    let (code, err) = gwctl(&server, &config, None, &["get", "tenants"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: listing tenants: not authenticated (missing or invalid token): pass --token, set GW_TOKEN or run `gwctl config set-token`"
    );
    let ok = (0, "No tenants found.".to_owned());
    assert_eq!(
        gwctl(
            &server,
            &config,
            None,
            &["--token", TOKEN, "get", "tenants"]
        )
        .await,
        ok
    );
    assert_eq!(
        gwctl(&server, &config, Some(TOKEN), &["get", "tenants"]).await,
        ok
    );
    // The flag wins over the environment.
    assert_eq!(
        gwctl(
            &server,
            &config,
            Some("wrong"),
            &["--token", TOKEN, "get", "tenants"]
        )
        .await
        .0,
        0
    );
    assert_eq!(
        gwctl(&server, &config, None, &["config", "set-token", TOKEN])
            .await
            .0,
        0
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    assert_eq!(gwctl(&server, &config, None, &["get", "tenants"]).await, ok);
    // Only the Tenants service is served here: the rest of the API is "not offered".
    let (code, err) = gwctl(&server, &config, None, &["get", "routes"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: listing routes: the control plane does not offer this call (unimplemented); is it an older version than gwctl?"
    );
}
