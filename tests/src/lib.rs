//! End-to-end test support: processes, ports and Envoy installation.
