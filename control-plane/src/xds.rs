//! xDS: translation of the gw model into Envoy v3 resources, and the ADS server.
