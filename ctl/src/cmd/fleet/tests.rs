//! Snapshot tests of `proxies` and `describe proxy` output.

use super::*;

fn ty(name: &str, sent: &str, acked: &str, resources: u32) -> pb::XdsTypeStatus {
    pb::XdsTypeStatus {
        r#type: name.into(),
        sent_version: sent.into(),
        acked_version: acked.into(),
        resources,
        ..Default::default()
    }
}

fn nack() -> pb::XdsNack {
    pb::XdsNack {
        r#type: "RDS".into(),
        version: "7f3a9c0d1e2b4a5f".into(),
        error_detail: "regex ^(a+)+$ exceeds program size".into(),
        objects: vec!["route/acme/users".into()],
        at: Some(prost_types::Timestamp {
            seconds: 1_763_856_000,
            nanos: 0,
        }),
    }
}

fn fleet() -> Vec<pb::Proxy> {
    let synced = pb::Proxy {
        node_id: "edge-1".into(),
        node_cluster: "ingress".into(),
        address: "127.0.0.1:50412".into(),
        protocol: "delta".into(),
        status: pb::SyncStatus::Synced as i32,
        user_agent: "gw-proxy 0.1.0".into(),
        synced_revision: 12,
        current_revision: 12,
        types: vec![
            ty("CDS", "12", "12", 2),
            ty("EDS", "12", "12", 2),
            ty("LDS", "12", "12", 1),
            ty("RDS", "12", "12", 1),
        ],
        ..Default::default()
    };
    let mut rds = ty("RDS", "7f3a9c0d1e2b4a5f", "5", 1);
    rds.nack = Some(nack());
    let nacked = pb::Proxy {
        node_id: "envoy-1".into(),
        node_cluster: "ingress".into(),
        address: "127.0.0.1:50420".into(),
        protocol: "sotw".into(),
        status: pb::SyncStatus::Nacked as i32,
        user_agent: "envoy 1.36.2".into(),
        synced_revision: 5,
        current_revision: 12,
        types: vec![
            ty("CDS", "12", "12", 2),
            ty("EDS", "12", "12", 2),
            ty("LDS", "12", "12", 1),
            rds,
        ],
        last_nack: Some(nack()),
        ..Default::default()
    };
    vec![synced, nacked]
}

#[test]
fn proxies_table_with_the_nack_and_what_it_blames() {
    assert_eq!(
        proxies_text(&fleet(), false),
        "\
NODE     CLUSTER  ADDRESS          PROTOCOL  CONNECTED  STATUS  CDS  EDS  LDS  RDS
edge-1   ingress  127.0.0.1:50412  delta     -          SYNCED  12   12   12   12
envoy-1  ingress  127.0.0.1:50420  sotw      -          NACKED  12   12   12   5

envoy-1 NACKed RDS version 7f3a9c0d1e2b…: regex ^(a+)+$ exceeds program size
  caused by: route/acme/users
"
    );
}

#[test]
fn describe_proxy() {
    assert_eq!(
        proxy_text(&fleet()[1], false),
        "\
Node:          envoy-1
Node cluster:  ingress
Address:       127.0.0.1:50420
User agent:    envoy 1.36.2
Protocol:      sotw
Connected:     -
Status:        NACKED
Revision:      synced 5 of 12

TYPE  SENT           ACKED  RESOURCES  NACK
CDS   12             12     2          -
EDS   12             12     2          -
LDS   12             12     1          -
RDS   7f3a9c0d1e2b…  5      1          regex ^(a+)+$ exceeds program size

Last NACK (RDS at 2025-11-23T00:00:00.000Z): regex ^(a+)+$ exceeds program size
Blamed objects: route/acme/users
"
    );
}
