//! cachegate: a standalone HTTP caching service in front of Redis.
//!
//! Layout: `config` (environment), `keys` (validated keys, TTLs, patterns), `store` (every
//! Redis call), `routes` (HTTP, one module per resource), `body` (request bodies), `error`
//! (the JSON error envelope), `auth` (tokens and scopes), `telemetry` (logs, request ids,
//! metrics), `openapi` (the document), `connection` (each connection's request deadline),
//! `server` (building and running), `cli`.

pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod connection;
pub mod error;
pub mod keys;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod tags;
pub mod telemetry;

pub use config::Config;
pub use server::{run, start, RunningServer};
