//! Custody answers owed to upstream neighbours, and the three rules for when each may go.
//!
//! A custody answer is a promise: "accepted" tells the neighbour it may delete its copy, so it
//! must never leave before the message is durable somewhere downstream of it. The rules:
//!
//! 1. **At the commit** ([`Answers::at_commit`]): refusals, and acceptances of messages that
//!    were delivered here (the inbox row is in this node's batch). They go when the batch's
//!    commit succeeds; if it fails, every one of them becomes "busy" and the sender keeps its
//!    copy.
//! 2. **At the commit, or earlier downstream** ([`Answers::await_downstream`]): acceptances of
//!    messages only relayed. They go at the commit like rule 1, unless the next hop accepts the
//!    message first (cut-through): then the message is durable downstream and the answer is
//!    released at once ([`Answers::downstream_took`]), even if this node's commit later fails.
//! 3. **Released** answers go with the next transmits, whatever happens to the batch.
//!
//! Answers leave in a stable order: released ones first, then the batch's in arrival order,
//! then the relayed ones by held sequence number.
//!
//! When the commit is split (the store syncs in the background, `Node::commit_begin`), the
//! batch's answers are sealed with it ([`Answers::seal`]) and wait for it to land
//! ([`Answers::take_sealed`]); rule 2 still applies to them meanwhile. If the sealed batch
//! fails, the batch opened on top of it fails with it: both sets go as "busy".

use rustc_hash::FxHashMap;

use super::frame::CustodyResult;
use super::link::LinkId;

/// One answer for one link.
pub(super) type Answer = (LinkId, CustodyResult);

/// The custody answers a node owes, by the rule that releases them.
#[derive(Debug, Default)]
pub(super) struct Answers {
    at_commit: Vec<Answer>,
    /// By the held seq of the relayed message.
    awaiting: FxHashMap<u64, Answer>,
    released: Vec<Answer>,
    /// The answers of the batch in flight (split commits), waiting for it to land.
    sealed: Option<Sealed>,
}

/// A sealed batch's answers: rule 1, then rule 2 by held seq.
#[derive(Debug, Default)]
struct Sealed {
    at_commit: Vec<Answer>,
    awaiting: FxHashMap<u64, Answer>,
}

impl Answers {
    /// Rule 1: goes when the batch commits (as "busy" if the commit fails).
    pub(super) fn at_commit(&mut self, answer: Answer) {
        self.at_commit.push(answer);
    }

    /// Rule 2: an acceptance of relayed message `seq`.
    pub(super) fn await_downstream(&mut self, seq: u64, answer: Answer) {
        self.awaiting.insert(seq, answer);
    }

    /// The next hop took custody of message `seq`: its upstream answer may go now.
    pub(super) fn downstream_took(&mut self, seq: u64) {
        let sealed = self.sealed.as_mut().map(|s| &mut s.awaiting);
        if let Some(answer) =
            self.awaiting.remove(&seq).or_else(|| sealed.and_then(|s| s.remove(&seq)))
        {
            self.released.push(answer);
        }
    }

    /// Rule 3: what may go now, whatever the batch's fate.
    pub(super) fn take_released(&mut self) -> Vec<Answer> {
        std::mem::take(&mut self.released)
    }

    /// Everything the batch owed, for its commit: released answers, then the rest in order.
    pub(super) fn take_for_commit(&mut self) -> (Vec<Answer>, Vec<Answer>) {
        let released = self.take_released();
        // The open batch's answers, in the order a sealed batch's leave (any sealed batch
        // stays sealed).
        let sealed = self.sealed.take();
        self.seal();
        let rest = self.take_sealed();
        self.sealed = sealed;
        (released, rest)
    }

    /// Seals the open batch's answers (rules 1 and 2) to wait for its commit to land.
    pub(super) fn seal(&mut self) {
        debug_assert!(self.sealed.is_none(), "one batch in flight at a time");
        self.sealed = Some(Sealed {
            at_commit: std::mem::take(&mut self.at_commit),
            awaiting: std::mem::take(&mut self.awaiting),
        });
    }

    /// The sealed batch's answers, in order, now that it has landed (or failed).
    pub(super) fn take_sealed(&mut self) -> Vec<Answer> {
        let Some(Sealed { mut at_commit, awaiting }) = self.sealed.take() else {
            return Vec::new();
        };
        let mut awaiting: Vec<(u64, Answer)> = awaiting.into_iter().collect();
        awaiting.sort_by_key(|(seq, _)| *seq);
        at_commit.extend(awaiting.into_iter().map(|(_, a)| a));
        at_commit
    }

    /// Whether a sealed batch's answers wait for it to land.
    pub(super) fn sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Relayed messages of the open batch whose next hop has not accepted them yet.
    pub(super) fn awaiting_downstream(&self) -> usize {
        self.awaiting.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.at_commit.is_empty() && self.awaiting.is_empty() && self.released.is_empty()
    }

    /// (at the commit, awaiting downstream, released), for the invariant check.
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        (self.at_commit.len(), self.awaiting.len(), self.released.len())
    }
}
