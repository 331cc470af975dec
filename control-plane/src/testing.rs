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
