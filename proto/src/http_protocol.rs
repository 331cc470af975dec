//! Envoy's upstream HTTP protocol options (a cluster's `typed_extension_protocol_options`), as
//! the control plane sends them and gw-proxy reads them.

use crate::envoy::pb::envoy::config::core::v3::Http2ProtocolOptions;
use crate::envoy::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use crate::envoy::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use crate::envoy::pb::google::protobuf::Any;
use prost::Message;

/// Their key in `typed_extension_protocol_options`.
pub const KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Their type URL.
pub const TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The options of a cluster whose endpoints speak HTTP/2 (cleartext, prior knowledge), spelled
/// out: `explicit_http_config.http2_protocol_options`.
pub fn http2() -> Any {
    with(UpstreamProtocolOptions::ExplicitHttpConfig(
        ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                Http2ProtocolOptions::default(),
            )),
        },
    ))
}

/// The options choosing the upstream protocol by `how`.
pub fn with(how: UpstreamProtocolOptions) -> Any {
    let o = HttpProtocolOptions {
        upstream_protocol_options: Some(how),
        ..Default::default()
    };
    Any {
        type_url: TYPE_URL.to_owned(),
        value: o.encode_to_vec(),
    }
}
