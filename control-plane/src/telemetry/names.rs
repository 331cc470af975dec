//! Resolves Envoy cluster and route names to gw `(tenant, name)`.
//!
//! gw's xDS names resources `TENANT/NAME` (names never contain `/`). Other separators a
//! translation might use (`TENANT.NAME`, `TENANT_NAME`) are resolved against the configured
//! clusters and routes, refreshed whenever the store revision moves.

use crate::store::Store;
use gw_proto::model::Kind;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Name lookup table, swapped whole on refresh.
#[derive(Debug, Default, Clone)]
pub struct Names {
    table: Arc<RwLock<HashMap<String, (String, String)>>>,
}

impl Names {
    /// `(tenant, name)` for an Envoy cluster or route name.
    pub fn resolve(&self, envoy_name: &str) -> Option<(String, String)> {
        if let Some((t, n)) = envoy_name.split_once('/') {
            if !t.is_empty() && !n.is_empty() && !n.contains('/') {
                return Some((t.to_owned(), n.to_owned()));
            }
        }
        self.table.read().ok()?.get(envoy_name).cloned()
    }

    /// Rebuilds the table from the store.
    pub async fn refresh(&self, store: &Store) {
        let Ok(snap) = store.snapshot().await else {
            return;
        };
        let mut table = HashMap::new();
        for o in &snap.objects {
            if matches!(o.spec.kind(), Kind::Cluster | Kind::Route) {
                let v = (o.meta.tenant.clone(), o.meta.name.clone());
                for sep in ['.', '_', ':'] {
                    table.insert(format!("{}{sep}{}", o.meta.tenant, o.meta.name), v.clone());
                }
            }
        }
        if let Ok(mut t) = self.table.write() {
            *t = table;
        }
    }
}
