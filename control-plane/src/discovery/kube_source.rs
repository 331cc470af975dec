//! The real API server, through kube's watcher.

use super::{SliceSource, SliceStream};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

/// EndpointSlices from a Kubernetes API server (in-cluster service account, or `KUBECONFIG`).
#[derive(Clone)]
pub struct KubeSource {
    client: Client,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeSource")
    }
}

impl KubeSource {
    /// Connects as `kubectl` would: the pod's service account in a cluster, else `KUBECONFIG` or
    /// `~/.kube/config`.
    pub async fn connect() -> anyhow::Result<KubeSource> {
        let client = Client::try_default().await?;
        Ok(KubeSource { client })
    }

    /// With a client made elsewhere.
    pub fn new(client: Client) -> KubeSource {
        KubeSource { client }
    }
}

impl SliceSource for KubeSource {
    fn watch(&self, namespace: &str, service: &str) -> SliceStream {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let cfg =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        watcher(api, cfg)
            .default_backoff()
            .map_err(|e| e.to_string())
            .boxed()
    }
}
