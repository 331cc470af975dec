//! The `gateway.v1` gRPC services.
