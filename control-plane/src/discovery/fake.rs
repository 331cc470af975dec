//! A stand-in for the Kubernetes API server in tests (feature `test-util`): it holds
//! EndpointSlices and serves watches with the watcher's event order (`Init`, `InitApply`…,
//! `InitDone`, then `Apply` / `Delete`), selecting slices by `kubernetes.io/service-name` as the
//! real label selector does.
#![cfg(any(test, feature = "test-util"))]

use super::{SliceSource, SliceStream};
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// Slices by (namespace, name), and the open watches.
#[derive(Debug, Default)]
struct State {
    slices: BTreeMap<(String, String), EndpointSlice>,
    watches: Vec<Watch>,
}

#[derive(Debug)]
struct Watch {
    namespace: String,
    service: String,
    tx: mpsc::UnboundedSender<Result<Event<EndpointSlice>, String>>,
}

/// A fake API server; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

fn key(s: &EndpointSlice) -> (String, String) {
    (
        s.metadata.namespace.clone().unwrap_or_default(),
        s.metadata.name.clone().unwrap_or_default(),
    )
}

fn service_of(s: &EndpointSlice) -> Option<&str> {
    s.metadata
        .labels
        .as_ref()?
        .get(SERVICE_LABEL)
        .map(String::as_str)
}

impl Watch {
    fn selects(&self, s: &EndpointSlice) -> bool {
        s.metadata.namespace.as_deref() == Some(self.namespace.as_str())
            && service_of(s) == Some(self.service.as_str())
    }
}

impl FakeApiServer {
    /// An API server with no slices.
    pub fn new() -> FakeApiServer {
        FakeApiServer::default()
    }

    /// Creates or replaces a slice (`metadata.namespace` and `metadata.name` identify it).
    pub fn apply(&self, slice: EndpointSlice) {
        let mut st = self.state.lock().expect("fake API server");
        st.watches.retain(|w| !w.tx.is_closed());
        let old = st.slices.insert(key(&slice), slice.clone());
        for w in &st.watches {
            if w.selects(&slice) {
                let _ = w.tx.send(Ok(Event::Apply(slice.clone())));
            } else if let Some(old) = old.as_ref().filter(|o| w.selects(o)) {
                // Relabelled away from this watch's Service: gone, as far as it can see.
                let _ = w.tx.send(Ok(Event::Delete(old.clone())));
            }
        }
    }

    /// Deletes a slice.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut st = self.state.lock().expect("fake API server");
        let Some(old) = st.slices.remove(&(namespace.to_owned(), name.to_owned())) else {
            return;
        };
        for w in st.watches.iter().filter(|w| w.selects(&old)) {
            let _ = w.tx.send(Ok(Event::Delete(old.clone())));
        }
    }

    /// Every open watch relists, as after an expired resource version: `Init`, the current
    /// slices, `InitDone`. Before that, each gets an error, as a dropped watch reports one.
    pub fn relist(&self) {
        let st = self.state.lock().expect("fake API server");
        for w in &st.watches {
            let _ = w.tx.send(Err("watch closed by the fake API server".into()));
            Self::list_into(&st, w);
        }
    }

    /// How many watches are open for the Service.
    pub fn watching(&self, namespace: &str, service: &str) -> usize {
        let st = self.state.lock().expect("fake API server");
        st.watches
            .iter()
            .filter(|w| !w.tx.is_closed() && w.namespace == namespace && w.service == service)
            .count()
    }

    fn list_into(st: &State, w: &Watch) {
        let _ = w.tx.send(Ok(Event::Init));
        for s in st.slices.values().filter(|s| w.selects(s)) {
            let _ = w.tx.send(Ok(Event::InitApply(s.clone())));
        }
        let _ = w.tx.send(Ok(Event::InitDone));
    }
}

impl SliceSource for FakeApiServer {
    fn watch(&self, namespace: &str, service: &str) -> SliceStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Watch {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            tx,
        };
        let mut st = self.state.lock().expect("fake API server");
        Self::list_into(&st, &w);
        st.watches.push(w);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed()
    }
}
