//! The `Tokens` service: create, list and revoke API tokens (admin only), and `WhoAmI`.

use super::store_status;
use crate::auth::{authorize, principal, reload, Access, Tokens};
use crate::store::{Store, TokenRecord};
use gw_proto::gateway::v1 as pb;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Token management.
#[derive(Clone, Debug)]
pub struct TokensApi {
    store: Store,
    /// The replica's token table, reloaded after each change here; `None` without `--auth`.
    tokens: Option<Tokens>,
}

impl TokensApi {
    /// Serves tokens from `store`; `tokens` is the table the interceptor checks, if auth is on.
    pub fn new(store: Store, tokens: Option<Tokens>) -> Self {
        TokensApi { store, tokens }
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::tokens_server::TokensServer<Self> {
        pb::tokens_server::TokensServer::new(self)
    }
}

fn to_pb(t: TokenRecord) -> pb::Token {
    pb::Token {
        name: t.name,
        role: t.role.as_str().into(),
        tenant: t.tenant,
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms.unwrap_or(0),
        subject: t.subject.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::tokens_server::Tokens for TokensApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        authorize(&req, Access::Write, None)?;
        let r = req.into_inner();
        let ttl = (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds));
        let (token, secret) = self
            .store
            .create_token(
                &r.name,
                &r.role,
                &r.tenant,
                ttl,
                Some(r.subject.as_str()).filter(|s| !s.is_empty()),
            )
            .await
            .map_err(store_status)?;
        reload(self.tokens.as_ref()).await;
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(to_pb(token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        authorize(&req, Access::Write, None)?;
        let tokens = self.store.list_tokens().await.map_err(store_status)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.into_iter().map(to_pb).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        authorize(&req, Access::Write, None)?;
        let name = req.into_inner().name;
        self.store.revoke_token(&name).await.map_err(store_status)?;
        reload(self.tokens.as_ref()).await;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let who = principal(&req);
        Ok(Response::new(pb::WhoAmIResponse {
            auth_enabled: self.tokens.is_some(),
            name: who.map(|p| p.name.clone()).unwrap_or_default(),
            role: who.map_or("admin", |p| p.role.as_str()).into(),
            tenant: who.map(|p| p.tenant.clone()).unwrap_or_default(),
        }))
    }
}
