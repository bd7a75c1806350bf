//! relaymesh-sim: many real relay nodes in one process, over a virtual network, in virtual time.
//!
//! # Layout
//! - [`scenario`]: the scenario file format (README, "Simulator"), parsed and checked up front.
//! - [`fabric`]: the virtual UDP network (quinn's `AsyncUdpSocket`), links and fault rules.
//! - [`oracle`]: who each message is for, from the scenario's declared membership.
//! - [`world`]: the run itself: nodes, traffic, events, random failures.
//! - [`report`]: accounting, invariants, expectations; table and JSON. `html`: the HTML page.
//!
//! # Design overview
//! Every node is the real relay (`relaymesh::shell::Relay`: core, quinn, rustls, store) with
//! its sockets on the fabric and an in-memory store whose committed state survives a simulated
//! crash. All of them run in one current-thread tokio runtime with a paused clock, so time jumps
//! from one timer to the next; quinn, rustls (certificate validity) and the core all read that
//! clock. One loop plays the scenario's traffic and events in virtual-time order. With the same
//! scenario and seed, a run gives the same report, but for the wall-clock fields.

pub mod fabric;
mod html;
pub mod oracle;
mod pairs;
pub mod report;
pub mod scenario;
pub mod world;

use std::time::Duration;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};

/// Runs a scenario to completion on a fresh paused runtime and returns its report.
pub fn run(sc: &Scenario, seed: u64, progress: &mut dyn FnMut(Duration)) -> Report {
    run_observed(sc, seed, progress).0
}

/// [`run`], with what the run observed (every message sent, every delivery, every withdrawal)
/// beside the report.
pub fn run_observed(
    sc: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(Duration),
) -> (Report, world::Observed) {
    let rt =
        match tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot build the simulation runtime: {e}"),
        };
    let wall = std::time::Instant::now();
    let observed = rt.block_on(world::run(sc, seed, progress));
    let wall = wall.elapsed();
    // Dropping the runtime drops every node's remaining tasks.
    drop(rt);
    // Debug builds check every node's invariants after every commit (`Scenario::
    // check_invariants`), so that no test's simulation can break one unnoticed, whatever the
    // test asserts of the report.
    debug_assert!(
        observed.violations.is_empty(),
        "invariants broken inside nodes: {:?}",
        observed.violations
    );
    (report::build(sc, seed, &observed, wall), observed)
}
