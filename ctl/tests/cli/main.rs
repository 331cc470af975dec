//! gwctl as a user runs it: the real binary against a real control plane (in-process, SQLite).

#![allow(clippy::unwrap_used)]

mod env;

mod config_objects;
mod fleet;
mod operator;
mod registry;
mod telemetry;
mod token;
