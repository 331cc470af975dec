//! The Delta (incremental) ADS protocol as a state machine, free of I/O: it turns responses into
//! the requests to send back (ACK / NACK / subscription changes) and asks a callback whether a
//! candidate set of resources can be served. Unit-tested step by step.
//!
//! Subscriptions: CDS and LDS are wildcard; EDS follows the clusters held and RDS the route
//! configurations the listeners name. On reconnect, `initial_resource_versions` tell the server
//! what we still hold, so it only sends what changed.

use super::{nack, resource_name, XdsError};
use crate::config::{self, type_url, Raw, Resources};
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use std::collections::{BTreeMap, HashMap};

/// What a response led to.
#[derive(Debug)]
pub struct Step {
    /// Requests to send, in order (the ACK/NACK first).
    pub requests: Vec<DeltaDiscoveryRequest>,
    /// Whether the response was applied.
    pub accepted: bool,
}

/// Client side of one Delta ADS stream.
#[derive(Debug)]
pub struct DeltaClient {
    node: Node,
    held: Resources,
    subscribed: HashMap<&'static str, Vec<String>>,
    /// `system_version_info` of the last accepted response, by type.
    pub versions: BTreeMap<String, String>,
}

impl DeltaClient {
    /// A client that already holds `held` (last-known-good, or empty).
    pub fn new(node: Node, held: Resources) -> DeltaClient {
        DeltaClient {
            node,
            held,
            subscribed: HashMap::new(),
            versions: BTreeMap::new(),
        }
    }

    /// The resources accepted so far.
    pub fn held(&self) -> &Resources {
        &self.held
    }

    /// The opening requests: wildcard CDS and LDS, EDS and RDS for what is held.
    pub fn start(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let eds = config::eds_names(&self.held);
        let rds = config::rds_names(&self.held);
        let mut out = vec![
            self.first(type_url::CLUSTER, Vec::new()),
            self.first(type_url::LISTENER, Vec::new()),
        ];
        if !eds.is_empty() {
            out.push(self.first(type_url::ENDPOINT, eds.clone()));
        }
        if !rds.is_empty() {
            out.push(self.first(type_url::ROUTE, rds.clone()));
        }
        self.subscribed.insert(type_url::ENDPOINT, eds);
        self.subscribed.insert(type_url::ROUTE, rds);
        out
    }

    fn first(&self, t: &str, names: Vec<String>) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            node: Some(self.node.clone()),
            type_url: t.into(),
            resource_names_subscribe: names,
            initial_resource_versions: self
                .held
                .of(t)
                .map(|(n, r)| (n.clone(), r.version.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// Applies `resp` to a copy of what is held; `accept` decides whether it can be served.
    pub fn on_response(
        &mut self,
        resp: &DeltaDiscoveryResponse,
        accept: &mut dyn FnMut(&Resources) -> Result<(), String>,
    ) -> Step {
        let result = candidate(&self.held, resp)
            .map_err(|e| e.to_string())
            .and_then(|c| accept(&c).map(|()| c));
        let accepted = result.is_ok();
        let mut requests = vec![DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            error_detail: result.as_ref().err().map(|e| nack(e.clone())),
            ..Default::default()
        }];
        if let Ok(c) = result {
            self.held = c;
            self.versions
                .insert(resp.type_url.clone(), resp.system_version_info.clone());
            requests.extend(self.resubscribe());
        }
        Step { requests, accepted }
    }

    /// Subscription changes for EDS and RDS after the held set changed.
    fn resubscribe(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let mut out = Vec::new();
        for (t, names) in [
            (type_url::ENDPOINT, config::eds_names(&self.held)),
            (type_url::ROUTE, config::rds_names(&self.held)),
        ] {
            let old = self.subscribed.get(t).cloned().unwrap_or_default();
            if old == names {
                continue;
            }
            let add: Vec<String> = names.iter().filter(|n| !old.contains(n)).cloned().collect();
            let remove: Vec<String> = old.iter().filter(|n| !names.contains(n)).cloned().collect();
            self.subscribed.insert(t, names);
            out.push(DeltaDiscoveryRequest {
                type_url: t.into(),
                resource_names_subscribe: add,
                resource_names_unsubscribe: remove,
                ..Default::default()
            });
        }
        out
    }
}

/// `held` with `resp` applied.
fn candidate(held: &Resources, resp: &DeltaDiscoveryResponse) -> Result<Resources, XdsError> {
    let mut c = held.clone();
    let map = c.by_type.entry(resp.type_url.clone()).or_default();
    for r in &resp.resources {
        let Some(any) = &r.resource else { continue };
        if any.type_url != resp.type_url {
            return Err(XdsError::WrongType {
                name: r.name.clone(),
                got: any.type_url.clone(),
                want: resp.type_url.clone(),
            });
        }
        let name = if r.name.is_empty() {
            resource_name(&resp.type_url, &any.value)?
        } else {
            r.name.clone()
        };
        map.insert(
            name,
            Raw {
                version: r.version.clone(),
                body: any.value.clone().into(),
            },
        );
    }
    for name in &resp.removed_resources {
        map.remove(name);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture;
    use gw_proto::envoy::pb::envoy::service::discovery::v3::Resource;
    use gw_proto::envoy::pb::google::protobuf::Any;
    use prost::Message;

    fn resource<M: Message>(t: &str, name: &str, v: &str, m: &M) -> Resource {
        Resource {
            name: name.into(),
            version: v.into(),
            resource: Some(Any {
                type_url: t.into(),
                value: m.encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    fn resp(t: &str, nonce: &str, resources: Vec<Resource>) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: t.into(),
            nonce: nonce.into(),
            system_version_info: format!("sys-{nonce}"),
            resources,
            ..Default::default()
        }
    }

    fn ok(_: &Resources) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn starts_wildcard_then_follows_clusters_and_listeners() {
        let mut c = DeltaClient::new(Node::default(), Resources::default());
        let first = c.start();
        let types: Vec<&str> = first.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [type_url::CLUSTER, type_url::LISTENER]);
        assert!(first[0].node.is_some(), "the first request names the node");

        let cds = resp(
            type_url::CLUSTER,
            "1",
            vec![resource(
                type_url::CLUSTER,
                "t/a",
                "v1",
                &fixture::cluster("t/a", "round_robin"),
            )],
        );
        let step = c.on_response(&cds, &mut ok);
        assert!(step.accepted);
        assert_eq!(step.requests[0].response_nonce, "1");
        assert!(step.requests[0].error_detail.is_none(), "ACK");
        assert_eq!(step.requests[1].type_url, type_url::ENDPOINT);
        assert_eq!(step.requests[1].resource_names_subscribe, ["t/a"]);

        let lds = resp(
            type_url::LISTENER,
            "2",
            vec![resource(
                type_url::LISTENER,
                "ingress",
                "v1",
                &fixture::listener("ingress", 8080, "rc"),
            )],
        );
        let step = c.on_response(&lds, &mut ok);
        assert_eq!(step.requests[1].type_url, type_url::ROUTE);
        assert_eq!(step.requests[1].resource_names_subscribe, ["rc"]);

        // Removing the cluster unsubscribes its endpoints.
        let mut rm = resp(type_url::CLUSTER, "3", vec![]);
        rm.removed_resources = vec!["t/a".into()];
        let step = c.on_response(&rm, &mut ok);
        assert_eq!(step.requests[1].resource_names_unsubscribe, ["t/a"]);
        assert_eq!(c.versions[type_url::CLUSTER], "sys-3");
    }

    #[test]
    fn refused_response_is_nacked_and_nothing_changes() {
        let mut c = DeltaClient::new(Node::default(), Resources::default());
        c.start();
        let cds = resp(
            type_url::CLUSTER,
            "1",
            vec![resource(
                type_url::CLUSTER,
                "t/a",
                "v1",
                &fixture::cluster("t/a", "round_robin"),
            )],
        );
        let step = c.on_response(&cds, &mut |_| Err("Cluster t/a: nope".into()));
        assert!(!step.accepted);
        assert_eq!(step.requests.len(), 1, "no subscription change on NACK");
        let detail = step.requests[0]
            .error_detail
            .as_ref()
            .map(|s| s.message.clone());
        assert_eq!(detail.as_deref(), Some("Cluster t/a: nope"));
        assert_eq!(step.requests[0].response_nonce, "1");
        assert!(c.held().by_type.is_empty());
    }

    #[test]
    fn wrong_type_and_garbage_are_nacked() {
        let mut c = DeltaClient::new(Node::default(), Resources::default());
        let mut bad = resp(type_url::CLUSTER, "1", vec![]);
        bad.resources.push(Resource {
            name: String::new(),
            resource: Some(Any {
                type_url: type_url::CLUSTER.into(),
                value: vec![0xff, 0xff, 0xff],
            }),
            ..Default::default()
        });
        let step = c.on_response(&bad, &mut ok);
        assert!(!step.accepted);
        let wrong = resp(
            type_url::CLUSTER,
            "2",
            vec![resource(
                type_url::LISTENER,
                "x",
                "v",
                &fixture::listener("x", 1, "rc"),
            )],
        );
        let step = c.on_response(&wrong, &mut ok);
        let msg = step.requests[0]
            .error_detail
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        assert!(msg.contains("expected"), "{msg}");
    }

    #[test]
    fn reconnect_announces_what_is_held() {
        let held = fixture::simple(
            vec![fixture::prefix_route("t/r", "/", "t/a")],
            &[("t/a", "round_robin", vec![])],
        );
        let mut c = DeltaClient::new(Node::default(), held);
        let first = c.start();
        let by_type: HashMap<&str, &DeltaDiscoveryRequest> =
            first.iter().map(|r| (r.type_url.as_str(), r)).collect();
        assert_eq!(
            by_type[type_url::CLUSTER].initial_resource_versions["t/a"],
            "1"
        );
        assert_eq!(
            by_type[type_url::ENDPOINT].resource_names_subscribe,
            ["t/a"]
        );
        assert_eq!(
            by_type[type_url::ROUTE].resource_names_subscribe,
            ["ingress"]
        );
    }
}
