//! relaymesh: a mesh relay and message bus for emergency command networks.
//!
//! # Layout
//! - [`core`]: the sans-IO protocol state machine (routing, precedence queues, custody,
//!   dedup, expiry, policy): the `relaymesh-core` crate, which cannot depend on tokio, quinn
//!   or redb (it has none of them in its dependencies).
//! - [`wire`]: the protobuf wire protocol and framing (in `relaymesh-core`); the only module
//!   that sees generated types.
//! - [`shell`]: the tokio/quinn/redb shell that runs a core: QUIC links with mutual TLS, the
//!   durable store, timers, the local HTTP API.
//! - [`pki`]: the deployment's PKI directory (the certificates themselves are made and checked
//!   in `relaymesh_core::pki`).
//! - [`cli`]: the `relaymesh` command line.
//! - [`api_model`]: the local API's documents as types, shared by the server and the CLI.
//! - [`logging`]: text or JSON log lines, for the node and the simulator.
//!
//! # Design overview
//! A relay node is a [`core::Node`] driven by a [`shell::driver`] task. QUIC connection tasks
//! decode frames and hand them to the driver; the driver feeds them to the core in batches,
//! commits the store once per batch (group commit), and carries out what the core asks:
//! frames to send, custody acknowledgements (only after the commit), deliveries to
//! applications. Time comes from tokio's clock and the UDP socket under quinn is injectable,
//! so the simulator runs the same shell over a virtual network in virtual time.

pub mod api_model;
pub mod cli;
pub mod gateway;
pub mod logging;
pub mod pki;
pub mod shell;
pub mod units;
pub use relaymesh_core as core;
pub use relaymesh_core::wire;
