//! Declared membership applied to the running nodes: at every start, and at each membership
//! event (or at the node's next start if it is down then).

use std::time::Duration;

use relaymesh::core::TopicPattern;
use tracing::{Instrument, info_span};

use super::World;
use crate::oracle::Change;

impl World<'_> {
    /// Tells running node `i` its declared membership: joins and subscriptions it has, leaves
    /// and unsubscriptions of whatever it had before. Durable in the node, so at a restart this
    /// changes nothing unless the scenario changed it while the node was down.
    pub(super) async fn assert_membership(&mut self, i: usize) {
        let node = &self.nodes[i];
        let Some(h) = node.handle.clone() else { return };
        let span = info_span!("node", id = %node.id);
        let (now, ever) = (node.member.clone(), node.ever.clone());
        async move {
            for g in &ever.groups {
                let join = now.groups.contains(g);
                if let Ok(Err(e)) = h.group(g.clone(), join).await {
                    tracing::error!("group {g}: {e}");
                }
            }
            for t in &ever.topics {
                let Ok(p) = TopicPattern::new(t) else { continue };
                if let Ok(Err(e)) = h.subscribe(p, now.topics.contains(t)).await {
                    tracing::error!("subscription {t}: {e}");
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// A declared membership change: applied to the node now if it runs, else at its next
    /// start; recorded for the oracle when applied.
    pub(super) async fn change_membership(&mut self, n: usize, change: Change, at: Duration) {
        let node = &mut self.nodes[n];
        node.member.apply(&change);
        match &change {
            Change::Join(g) | Change::Leave(g) => node.ever.groups.insert(g.clone()),
            Change::Subscribe(p) | Change::Unsubscribe(p) => node.ever.topics.insert(p.clone()),
        };
        let Some(h) = node.handle.clone() else {
            node.pending.push(change);
            return;
        };
        let span = info_span!("node", id = %node.id);
        let applied = async {
            match &change {
                Change::Join(g) => h.group(g.clone(), true).await,
                Change::Leave(g) => h.group(g.clone(), false).await,
                Change::Subscribe(p) | Change::Unsubscribe(p) => match TopicPattern::new(p) {
                    Ok(t) => h.subscribe(t, matches!(change, Change::Subscribe(_))).await,
                    Err(e) => Ok(Err(e.to_string())),
                },
            }
        }
        .instrument(span)
        .await;
        match applied {
            Ok(Ok(_)) => self.obs.declared.record(at, n, change),
            // Stopped (crashed since) or refused: applied at the next start.
            Ok(Err(e)) => {
                tracing::error!(node = %self.nodes[n].id, "{change:?}: {e}");
                self.nodes[n].pending.push(change);
            }
            Err(_) => self.nodes[n].pending.push(change),
        }
    }
}
