//! The local API's documents as types: the server writes them and the command line reads them
//! with the same definitions, so a renamed or retyped field is a compile error or a clear
//! "bad answer from the node", never a silent fallback. (Documents not modelled here yet are
//! still written as JSON values in `shell::api`.)

use serde::{Deserialize, Serialize};

use crate::core::MessageView;

/// `GET /v1/messages/{id}`: a message this node originated, as far as it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    /// 32 hex digits.
    pub id: String,
    pub to: String,
    pub precedence: String,
    /// `held`, `forwarded`, `delivered`, `partially_delivered`, `expired`, `refused` or
    /// `no_recipients`.
    pub state: String,
    /// Every destination's fate is known.
    pub settled: bool,
    pub accepted_at_us: u64,
    pub custody_at: Option<String>,
    pub receipt: bool,
    pub destinations: Vec<DestinationDoc>,
}

/// One destination of a [`MessageDoc`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestinationDoc {
    pub node: String,
    /// `delivered`, `expired` or `refused`; `None` while pending.
    pub outcome: Option<String>,
    pub age_ms: Option<f64>,
    pub reason: String,
}

impl MessageDoc {
    /// The destinations whose outcome is `outcome`.
    pub fn with_outcome(&self, outcome: &str) -> Vec<&str> {
        self.destinations
            .iter()
            .filter(|d| d.outcome.as_deref() == Some(outcome))
            .map(|d| d.node.as_str())
            .collect()
    }
}

impl From<&MessageView> for MessageDoc {
    fn from(v: &MessageView) -> MessageDoc {
        MessageDoc {
            id: v.id.to_string(),
            to: v.to.clone(),
            precedence: v.precedence.as_str().to_owned(),
            state: v.state.to_owned(),
            settled: v.settled,
            accepted_at_us: v.accepted_at.as_micros(),
            custody_at: v.custody_at.as_ref().map(ToString::to_string),
            receipt: v.receipt,
            destinations: v
                .destinations
                .iter()
                .map(|d| DestinationDoc {
                    node: d.node.to_string(),
                    outcome: d.outcome.map(|o| o.as_str().to_owned()),
                    age_ms: d.age.map(|a| a.as_secs_f64() * 1000.0),
                    reason: d.reason.clone(),
                })
                .collect(),
        }
    }
}

/// `POST /v1/messages`: the new message's id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitDoc {
    pub id: String,
}

/// `GET /v1/groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupsDoc {
    pub groups: Vec<String>,
}

/// `POST/DELETE /v1/groups`: what was asked, and whether it changed anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupChangeDoc {
    pub group: String,
    pub changed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_a_missing_field_is_an_error() {
        let doc = MessageDoc {
            id: "0".repeat(32),
            to: "group:medical".into(),
            precedence: "flash".into(),
            state: "partially_delivered".into(),
            settled: true,
            accepted_at_us: 7,
            custody_at: None,
            receipt: true,
            destinations: vec![DestinationDoc {
                node: "t1".into(),
                outcome: Some("expired".into()),
                age_ms: Some(1.5),
                reason: "lifetime ended".into(),
            }],
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<MessageDoc>(&text).unwrap(), doc);
        assert_eq!(doc.with_outcome("expired"), vec!["t1"]);
        let renamed = text.replace("\"state\"", "\"status\"");
        assert!(serde_json::from_str::<MessageDoc>(&renamed).is_err());
    }
}
