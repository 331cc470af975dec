//! `gwctl tokens create|list|revoke` (admin) and `gwctl whoami`.

use super::Ctx;
use crate::cli::{Format, TokensCommand};
use crate::error::{CliError, CliResult, StatusContext};
use crate::output::{print, table};
use gw_proto::gateway::v1 as pb;

fn when(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    crate::output::time_ms(ms)
}

fn scope(t: &pb::Token) -> &str {
    if t.tenant.is_empty() {
        "*"
    } else {
        &t.tenant
    }
}

/// Runs a `tokens` subcommand.
pub async fn run(ctx: &Ctx, cmd: TokensCommand) -> CliResult<u8> {
    let c = ctx.client().await?;
    match cmd {
        TokensCommand::Create {
            name,
            role,
            ttl,
            subject,
        } => {
            let ttl_seconds = match ttl {
                Some(s) => match super::parse_duration("ttl", &s)?.seconds {
                    n if n >= 1 => n as u64,
                    _ => return Err(CliError::other(format!("--ttl {s:?}: must be at least 1s"))),
                },
                None => 0,
            };
            if subject.as_deref() == Some("") {
                return Err(CliError::other(
                    "--subject: give the certificate's subject common name (it must not be empty)",
                ));
            }
            let req = pb::CreateTokenRequest {
                name,
                role,
                tenant: ctx.tenant.clone().unwrap_or_default(),
                ttl_seconds,
                subject: subject.unwrap_or_default(),
            };
            let r = c
                .tokens()
                .create_token(c.req(req))
                .await
                .context("tokens create")?;
            let t = r.token.unwrap_or_default();
            if matches!(ctx.output, Format::Json | Format::Yaml) {
                let v = serde_json::json!({"name": t.name, "role": t.role, "tenant": t.tenant,
                    "expiresAt": when(t.expires_at_ms), "subject": t.subject, "secret": r.secret});
                super::telemetry::emit(ctx.output, &v);
                return Ok(0);
            }
            eprintln!(
                "token {} created ({} of {}, expires {}); it is shown once, keep it safe:",
                t.name,
                t.role,
                scope(&t),
                when(t.expires_at_ms)
            );
            println!("{}", r.secret);
            Ok(0)
        }
        TokensCommand::List => {
            let tokens = c
                .tokens()
                .list_tokens(c.req(pb::ListTokensRequest {}))
                .await
                .context("tokens list")?
                .tokens;
            if matches!(ctx.output, Format::Json | Format::Yaml) {
                let v: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({"name": t.name, "role": t.role, "tenant": t.tenant,
                            "createdAt": when(t.created_at_ms), "expiresAt": when(t.expires_at_ms),
                            "subject": t.subject})
                    })
                    .collect();
                super::telemetry::emit(ctx.output, &v);
                return Ok(0);
            }
            let mut tbl = table(&["NAME", "ROLE", "TENANT", "CREATED", "EXPIRES", "SUBJECT"]);
            for t in &tokens {
                tbl.add_row(vec![
                    t.name.clone(),
                    t.role.clone(),
                    scope(t).to_owned(),
                    when(t.created_at_ms),
                    when(t.expires_at_ms),
                    if t.subject.is_empty() {
                        "-".into()
                    } else {
                        t.subject.clone()
                    },
                ]);
            }
            print(&tbl);
            Ok(0)
        }
        TokensCommand::Revoke { name } => {
            c.tokens()
                .revoke_token(c.req(pb::RevokeTokenRequest { name: name.clone() }))
                .await
                .context("tokens revoke")?;
            println!("token {name} revoked");
            Ok(0)
        }
    }
}

/// `gwctl whoami`: the token's name, role and tenant.
pub async fn whoami(ctx: &Ctx) -> CliResult<u8> {
    let c = ctx.client().await?;
    let me = c
        .tokens()
        .who_am_i(c.req(pb::WhoAmIRequest {}))
        .await
        .context("whoami")?;
    if !me.auth_enabled {
        println!("auth is off on this control plane: every caller may do everything (start it with --auth)");
    } else if me.tenant.is_empty() {
        println!("{} ({})", me.name, me.role);
    } else {
        println!("{} ({} of tenant {})", me.name, me.role, me.tenant);
    }
    Ok(0)
}
