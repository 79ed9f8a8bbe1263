//! The APISIX-compatible Admin API (`/apisix/admin/...`, `X-API-KEY`).
//!
//! Runs on its own thread with its own runtime, never on a worker. Every
//! change is applied to a copy of the resources, validated and compiled
//! exactly like the config file (same errors, same paths), then published
//! as a new snapshot that workers pick up between requests: nothing is
//! half-applied, in-flight requests finish on the snapshot they started
//! with, and shared state (cooldowns, health, round-robin tickets) carries
//! over. Changes go through [`crate::source::ConfigSource`], which keeps
//! them beside the configuration file: they survive restarts and reloads
//! of the file. In API-driven standalone mode the whole configuration is
//! replaced at once through `/apisix/admin/configs` ([`configs`]).

pub mod api;
pub mod configs;
pub mod server;
pub mod store;

pub use server::start;
pub use store::Store;
