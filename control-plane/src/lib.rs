//! gw control plane.
