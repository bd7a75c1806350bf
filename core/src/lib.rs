//! relaymesh-core: the sans-IO core of a relay (routing, queues, custody, dedup, expiry and
//! policy) and its wire protocol.
//!
//! Nothing in here performs I/O or reads a clock. Like quinn-proto, the core is a state machine
//! ([`Node`]) that takes inputs through `handle_*(now, ..)` methods and hands its outputs back
//! through `poll_*()` methods; the shell (the `relaymesh` crate) or the simulator carries them
//! out. This crate does not depend on tokio, quinn or redb, so the rule is the compiler's: an
//! import of any of them here does not build (and `.ci/run` checks the dependency tree).
//! Storage is reached through the small [`store::Store`] trait, so the core runs unchanged on
//! redb in production and on the in-memory [`store::MemStore`] in tests and simulations.
//!
//! Layout:
//! - [`types`]: identities, addresses, precedence, envelopes, the node clock.
//! - [`frame`]: what relays say to each other and what the store keeps, as domain values.
//! - [`node`]: the [`Node`] state machine and its calling contract.
//! - `answers`: custody answers owed upstream and the three rules that release them.
//! - `custody`: taking, holding, delivering, settling, expiring and reporting messages.
//! - `holdings`: what a node holds, in numbers (per precedence, bytes, per neighbour).
//! - `scheduler`: what each link carries next.
//! - [`link`]: one link's health, window and offers in flight.
//! - [`queue`]: the in-memory window over the durable queue.
//! - [`routing`]: the link-state database and shortest paths.
//! - [`membership`]: who group and topic messages are for, reachable or not; late binding.
//! - `adverts`: originating and flooding link-state adverts.
//! - [`steering`]: cancel, replace and latest-value keys.
//! - [`objects`]: large objects as a manifest and chunks; reassembly at the destination.
//! - `security`: signing, verifying, revocation lists, cutting off hostile neighbours.
//! - [`policy`]: who may send what to where.
//! - [`trust`]: origin signatures, certificates and revocation.
//! - [`store`], [`schema`]: the storage contract and key layouts.
//! - `status`: read-only views for the API and reports.
//! - [`invariants`]: what must hold between batches, checked (`Node::check_invariants`).
//! - [`wire`]: the protobuf wire protocol and framing; the only module that sees generated types.
//! - [`pki`]: the deployment CA's certificates and revocation lists as bytes, and [`pki::PkiTrust`],
//!   the [`trust::Trust`] over them (the shell reads and writes the files).

mod adverts;
mod answers;
pub mod config;
mod custody;
pub mod federation;
pub mod frame;
mod holdings;
pub mod invariants;
pub mod link;
pub mod membership;
pub mod node;
pub mod objectives;
pub mod objects;
pub mod pki;
pub mod policy;
pub mod queue;
pub mod routing;
mod scheduler;
pub mod schema;
mod security;
pub mod status;
pub mod steering;
pub mod store;
/// The store contract suite, for any [`store::Store`] (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
pub mod store_contract;
pub mod trust;
pub mod types;
pub mod wire;

pub use config::{CoreConfig, MediumConfig, StoreLimits};
pub use custody::{DISK_RESERVE, REPORT_CONTENT_TYPE};
pub use link::{LinkId, LinkInfo};
pub use node::{Counters, Event, Node, Submission, SubmitError, Transmit};
pub use objectives::OverdueView;
pub use status::{InboxItem, LinkView, MessageView, NodeStatus, TopologyLink};
pub use steering::CancelReceipt;
pub use types::{
    Address, Envelope, Medium, MessageId, NodeId, Outcome, Precedence, Role, Supersedes, Time,
    TopicPattern, TrafficStatus,
};

#[cfg(test)]
mod tests;
