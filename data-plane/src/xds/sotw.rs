//! The state-of-the-world ADS protocol as a state machine, free of I/O (see [`super::delta`]).
//! Every response carries all resources of its type; an ACK repeats its `version_info` and
//! nonce, a NACK the last accepted version with the new nonce and an `error_detail`.

use super::{nack, resource_name, XdsError};
use crate::config::{self, type_url, Raw, Resources};
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use gw_proto::envoy::pb::google::rpc::Status as RpcStatus;
use std::collections::{BTreeMap, HashMap};

/// What a response led to.
#[derive(Debug)]
pub struct Step {
    /// Requests to send, in order (the ACK/NACK first).
    pub requests: Vec<DiscoveryRequest>,
    /// Whether the response was applied.
    pub accepted: bool,
}

/// Client side of one SotW ADS stream.
#[derive(Debug)]
pub struct SotwClient {
    node: Node,
    held: Resources,
    names: HashMap<&'static str, Vec<String>>,
    /// Accepted `version_info` by type.
    pub versions: BTreeMap<String, String>,
}

impl SotwClient {
    /// A client that already holds `held`.
    pub fn new(node: Node, held: Resources) -> SotwClient {
        SotwClient {
            node,
            held,
            names: HashMap::new(),
            versions: BTreeMap::new(),
        }
    }

    /// The resources accepted so far.
    pub fn held(&self) -> &Resources {
        &self.held
    }

    fn request(
        &self,
        t: &str,
        names: Vec<String>,
        nonce: String,
        err: Option<RpcStatus>,
    ) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.versions.get(t).cloned().unwrap_or_default(),
            node: Some(self.node.clone()),
            resource_names: names,
            type_url: t.into(),
            response_nonce: nonce,
            error_detail: err,
            ..Default::default()
        }
    }

    /// The opening requests: wildcard CDS and LDS (EDS and RDS follow what they name).
    pub fn start(&mut self) -> Vec<DiscoveryRequest> {
        vec![
            self.request(type_url::CLUSTER, Vec::new(), String::new(), None),
            self.request(type_url::LISTENER, Vec::new(), String::new(), None),
        ]
    }

    /// Applies `resp`; `accept` decides whether the candidate can be served.
    pub fn on_response(
        &mut self,
        resp: &DiscoveryResponse,
        accept: &mut dyn FnMut(&Resources) -> Result<(), String>,
    ) -> Step {
        let t = resp.type_url.as_str();
        let subscribed = match t {
            type_url::ENDPOINT | type_url::ROUTE => self
                .names
                .iter()
                .find(|(k, _)| **k == t)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let result = candidate(&self.held, resp)
            .map_err(|e| e.to_string())
            .and_then(|c| accept(&c).map(|()| c));
        match result {
            Ok(c) => {
                self.held = c;
                self.versions
                    .insert(resp.type_url.clone(), resp.version_info.clone());
                let mut requests = vec![self.request(t, subscribed, resp.nonce.clone(), None)];
                for (kind, want) in [
                    (type_url::ENDPOINT, config::eds_names(&self.held)),
                    (type_url::ROUTE, config::rds_names(&self.held)),
                ] {
                    if self.names.get(kind) != Some(&want) {
                        self.names.insert(kind, want.clone());
                        requests.push(self.request(kind, want, String::new(), None));
                    }
                }
                Step {
                    requests,
                    accepted: true,
                }
            }
            Err(msg) => Step {
                requests: vec![self.request(t, subscribed, resp.nonce.clone(), Some(nack(msg)))],
                accepted: false,
            },
        }
    }
}

/// `held` with every resource of `resp`'s type replaced.
fn candidate(held: &Resources, resp: &DiscoveryResponse) -> Result<Resources, XdsError> {
    let mut c = held.clone();
    let mut fresh = BTreeMap::new();
    for any in &resp.resources {
        if any.type_url != resp.type_url {
            return Err(XdsError::WrongType {
                name: String::new(),
                got: any.type_url.clone(),
                want: resp.type_url.clone(),
            });
        }
        let name = resource_name(&resp.type_url, &any.value)?;
        fresh.insert(
            name,
            Raw {
                version: resp.version_info.clone(),
                body: any.value.clone().into(),
            },
        );
    }
    c.by_type.insert(resp.type_url.clone(), fresh);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture;
    use gw_proto::envoy::pb::google::protobuf::Any;
    use prost::Message;

    fn resp<M: Message>(t: &str, version: &str, nonce: &str, ms: &[M]) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            type_url: t.into(),
            nonce: nonce.into(),
            resources: ms
                .iter()
                .map(|m| Any {
                    type_url: t.into(),
                    value: m.encode_to_vec(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ack_repeats_version_and_nonce_then_subscribes_endpoints() {
        let mut c = SotwClient::new(Node::default(), Resources::default());
        assert_eq!(c.start().len(), 2);
        let cds = resp(
            type_url::CLUSTER,
            "v7",
            "n1",
            &[fixture::cluster("t/a", "least_conn")],
        );
        let step = c.on_response(&cds, &mut |_| Ok(()));
        assert!(step.accepted);
        assert_eq!(step.requests[0].version_info, "v7");
        assert_eq!(step.requests[0].response_nonce, "n1");
        let eds = step
            .requests
            .iter()
            .find(|r| r.type_url == type_url::ENDPOINT);
        assert_eq!(
            eds.map(|r| r.resource_names.clone()),
            Some(vec!["t/a".to_owned()])
        );
    }

    #[test]
    fn nack_keeps_the_last_accepted_version() {
        let mut c = SotwClient::new(Node::default(), Resources::default());
        c.start();
        let good = resp(
            type_url::CLUSTER,
            "v1",
            "n1",
            &[fixture::cluster("t/a", "round_robin")],
        );
        c.on_response(&good, &mut |_| Ok(()));
        let bad = resp(
            type_url::CLUSTER,
            "v2",
            "n2",
            &[fixture::cluster("t/b", "round_robin")],
        );
        let step = c.on_response(&bad, &mut |_| Err("Cluster t/b: bad".into()));
        assert!(!step.accepted);
        let r = &step.requests[0];
        assert_eq!(
            (r.version_info.as_str(), r.response_nonce.as_str()),
            ("v1", "n2")
        );
        assert_eq!(
            r.error_detail.as_ref().map(|e| e.message.as_str()),
            Some("Cluster t/b: bad")
        );
        assert!(c.held().of(type_url::CLUSTER).all(|(n, _)| n == "t/a"));
    }
}
