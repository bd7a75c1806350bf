//! Conversions between generated protobuf types and domain types.

use std::time::Duration;

use super::{Hello, WireError, pb};
use crate::frame::{
    Accepted, Advert, AdvertLink, AreaMember, CustodyCode, CustodyResult, Frame, InboxRecord,
    LatestKey, StatusRecord, StatusReport, StoredMessage, Tombstone, Withdrawal,
};
use crate::types::{
    Address, Body, Envelope, Medium, MessageId, NodeId, Outcome, Precedence, Report, Role,
    Supersedes, Time, TopicPattern, TrafficStatus, check_key, duration_micros,
};

const MAX_CONTENT_TYPE: usize = 128;
const MAX_DESTINATIONS: usize = 4096;
const MAX_REASON: usize = 1024;
const MAX_CERTIFICATE: usize = 8 * 1024;
const MAX_CRL: usize = 1024 * 1024;
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

pub(super) fn us(d: Duration) -> u64 {
    duration_micros(d)
}

fn node(what: &'static str, s: &str) -> Result<NodeId, WireError> {
    NodeId::new(s).map_err(|e| WireError::invalid(what, e))
}

fn nodes(what: &'static str, list: &[String]) -> Result<Vec<NodeId>, WireError> {
    if list.len() > MAX_DESTINATIONS {
        return Err(WireError::invalid(what, "too many"));
    }
    list.iter().map(|s| node(what, s)).collect()
}

fn id(what: &'static str, b: &[u8]) -> Result<MessageId, WireError> {
    MessageId::from_slice(b).ok_or_else(|| WireError::invalid(what, "must be 16 bytes"))
}

pub(super) fn precedence_to_pb(p: Precedence) -> pb::Precedence {
    match p {
        Precedence::Flash => pb::Precedence::Flash,
        Precedence::Immediate => pb::Precedence::Immediate,
        Precedence::Priority => pb::Precedence::Priority,
        Precedence::Routine => pb::Precedence::Routine,
    }
}

fn precedence_from_pb(v: i32) -> Result<Precedence, WireError> {
    match pb::Precedence::try_from(v) {
        Ok(pb::Precedence::Flash) => Ok(Precedence::Flash),
        Ok(pb::Precedence::Immediate) => Ok(Precedence::Immediate),
        Ok(pb::Precedence::Priority) => Ok(Precedence::Priority),
        Ok(pb::Precedence::Routine) => Ok(Precedence::Routine),
        Err(_) => Err(WireError::invalid("precedence", v)),
    }
}

fn outcome_to_pb(o: Outcome) -> pb::report::Outcome {
    match o {
        Outcome::Delivered => pb::report::Outcome::Delivered,
        Outcome::Expired => pb::report::Outcome::Expired,
        Outcome::Refused => pb::report::Outcome::Refused,
        Outcome::Cancelled => pb::report::Outcome::Cancelled,
        Outcome::Superseded => pb::report::Outcome::Superseded,
    }
}

fn outcome_from_pb(v: i32) -> Result<Outcome, WireError> {
    match pb::report::Outcome::try_from(v) {
        Ok(pb::report::Outcome::Delivered) => Ok(Outcome::Delivered),
        Ok(pb::report::Outcome::Expired) => Ok(Outcome::Expired),
        Ok(pb::report::Outcome::Refused) => Ok(Outcome::Refused),
        Ok(pb::report::Outcome::Cancelled) => Ok(Outcome::Cancelled),
        Ok(pb::report::Outcome::Superseded) => Ok(Outcome::Superseded),
        Err(_) => Err(WireError::invalid("report outcome", v)),
    }
}

pub(super) fn status_to_pb_enum(s: TrafficStatus) -> pb::Status {
    match s {
        TrafficStatus::Actual => pb::Status::Actual,
        TrafficStatus::Exercise => pb::Status::Exercise,
        TrafficStatus::Test => pb::Status::Test,
        TrafficStatus::System => pb::Status::System,
    }
}

fn bounded(what: &'static str, s: String, max: usize) -> Result<String, WireError> {
    if s.len() > max {
        return Err(WireError::invalid(what, format!("longer than {max} bytes")));
    }
    Ok(s)
}

pub(super) fn hello_to_pb(h: &Hello) -> pb::Hello {
    pb::Hello {
        version: h.version,
        node: h.node.to_string(),
        role: h.role.to_string(),
        capabilities: h.capabilities.clone(),
        medium: h.medium.to_string(),
    }
}

pub(super) fn hello_from_pb(h: pb::Hello) -> Result<Hello, WireError> {
    if h.capabilities.len() > 64 || h.capabilities.iter().any(|c| c.len() > 64) {
        return Err(WireError::invalid("hello", "too many or too long capabilities"));
    }
    Ok(Hello {
        version: h.version,
        node: node("hello node", &h.node)?,
        role: h.role.parse().map_err(|e| WireError::invalid("hello role", e))?,
        capabilities: h.capabilities,
        medium: h.medium.parse().map_err(|e| WireError::invalid("hello medium", e))?,
    })
}

pub(super) fn envelope_to_pb(e: &Envelope) -> pb::Envelope {
    let (kind, report) = body_to_pb(e);
    let reason = match &e.body {
        Body::Cancel { reason, .. } => reason.clone(),
        _ => String::new(),
    };
    let replaced_by = match &e.body {
        Body::Cancel { replaced_by: Some(id), .. } => id.0.to_vec().into(),
        _ => bytes::Bytes::new(),
    };
    pb::Envelope {
        id: e.id.0.to_vec().into(),
        origin: e.origin.to_string(),
        to: e.to.to_string(),
        precedence: precedence_to_pb(e.precedence) as i32,
        lifetime_us: us(e.lifetime),
        content_type: e.content_type.clone(),
        payload: e.payload.clone(),
        receipt: e.receipt,
        kind: kind as i32,
        status: status_to_pb_enum(e.status) as i32,
        created_us: e.created.as_micros(),
        age_us: us(e.age),
        hop_count: e.hop_count,
        destinations: e.destinations.iter().map(ToString::to_string).collect(),
        signature: e.signature.clone(),
        report,
        offer: 0,
        key: e.key.clone().unwrap_or_default(),
        supersedes: e.supersedes.as_ref().map(supersedes_to_pb),
        reason,
        replaced_by,
    }
}

fn supersedes_to_pb(s: &Supersedes) -> pb::Supersedes {
    pb::Supersedes { origin: s.origin.to_string(), id: s.id.0.to_vec().into() }
}

fn supersedes_from_pb(s: Option<pb::Supersedes>) -> Result<Option<Supersedes>, WireError> {
    s.map(|s| {
        Ok(Supersedes {
            origin: node("supersedes origin", &s.origin)?,
            id: id("supersedes id", &s.id)?,
        })
    })
    .transpose()
}

/// A latest-value key as it crossed the wire ("" for none).
pub(super) fn key_from_pb(key: String) -> Result<Option<String>, WireError> {
    if key.is_empty() {
        return Ok(None);
    }
    check_key(&key).map_err(|e| WireError::invalid("envelope key", e))?;
    Ok(Some(key))
}

/// An envelope's kind, and its report if it is one.
pub(super) fn body_to_pb(e: &Envelope) -> (pb::Kind, Option<pb::Report>) {
    match &e.body {
        Body::Data => (pb::Kind::Data, None),
        Body::Cancel { .. } => (pb::Kind::Cancel, None),
        Body::Report(r) => (
            pb::Kind::Report,
            Some(pb::Report {
                of: r.of.0.to_vec().into(),
                outcome: outcome_to_pb(r.outcome) as i32,
                at_node: r.at_node.to_string(),
                age_us: us(r.age),
                reason: r.reason.clone(),
                destinations: r.destinations.iter().map(ToString::to_string).collect(),
            }),
        ),
    }
}

pub(super) fn envelope_from_pb(e: pb::Envelope) -> Result<Envelope, WireError> {
    let lifetime = Duration::from_micros(e.lifetime_us);
    if lifetime > MAX_LIFETIME {
        return Err(WireError::invalid("envelope lifetime", "longer than a year"));
    }
    if e.destinations.len() > MAX_DESTINATIONS {
        return Err(WireError::invalid("envelope destinations", "too many"));
    }
    let mut destinations = e
        .destinations
        .iter()
        .map(|d| node("envelope destination", d))
        .collect::<Result<Vec<_>, _>>()?;
    destinations.sort();
    destinations.dedup();
    let body = match pb::Kind::try_from(e.kind) {
        Ok(pb::Kind::Data) => Body::Data,
        Ok(pb::Kind::Report) => {
            let r = e
                .report
                .ok_or_else(|| WireError::invalid("envelope", "report kind without a report"))?;
            Body::Report(Report {
                of: id("report id", &r.of)?,
                outcome: outcome_from_pb(r.outcome)?,
                at_node: node("report node", &r.at_node)?,
                age: Duration::from_micros(r.age_us),
                reason: bounded("report reason", r.reason, MAX_REASON)?,
                destinations: nodes("report destination", &r.destinations)?,
            })
        }
        Ok(pb::Kind::Cancel) => {
            if e.supersedes.is_none() {
                return Err(WireError::invalid("envelope", "a cancel that names no message"));
            }
            Body::Cancel {
                reason: bounded("cancel reason", e.reason, MAX_REASON)?,
                replaced_by: optional_id("cancel replaced by", &e.replaced_by)?,
            }
        }
        Err(_) => return Err(WireError::invalid("envelope kind", e.kind)),
    };
    if matches!(body, Body::Report(_)) && (e.supersedes.is_some() || !e.key.is_empty()) {
        return Err(WireError::invalid("envelope", "a report with a key or a target"));
    }
    let status = match pb::Status::try_from(e.status) {
        Ok(pb::Status::Actual) => TrafficStatus::Actual,
        Ok(pb::Status::Exercise) => TrafficStatus::Exercise,
        Ok(pb::Status::Test) => TrafficStatus::Test,
        Ok(pb::Status::System) => TrafficStatus::System,
        Err(_) => return Err(WireError::invalid("envelope status", e.status)),
    };
    if e.signature.len() > crate::trust::MAX_SEAL {
        return Err(WireError::invalid(
            "envelope signature",
            format!("longer than {} bytes", crate::trust::MAX_SEAL),
        ));
    }
    Ok(Envelope {
        id: id("envelope id", &e.id)?,
        origin: node("envelope origin", &e.origin)?,
        to: Address::parse(&e.to).map_err(|err| WireError::invalid("envelope address", err))?,
        precedence: precedence_from_pb(e.precedence)?,
        lifetime,
        content_type: bounded("content type", e.content_type, MAX_CONTENT_TYPE)?,
        payload: e.payload,
        receipt: e.receipt,
        body,
        status,
        created: Time::from_micros(e.created_us),
        age: Duration::from_micros(e.age_us),
        hop_count: e.hop_count,
        destinations,
        signature: e.signature,
        key: key_from_pb(e.key)?,
        supersedes: supersedes_from_pb(e.supersedes)?,
    })
}

fn code_to_pb(c: CustodyCode) -> pb::custody_result::Code {
    use pb::custody_result::Code;
    match c {
        CustodyCode::Accepted => Code::Accepted,
        CustodyCode::Busy => Code::RefusedBusy,
        CustodyCode::Policy => Code::RefusedPolicy,
        CustodyCode::Expired => Code::RefusedExpired,
        CustodyCode::Invalid => Code::RefusedInvalid,
    }
}

fn code_from_pb(v: i32) -> Result<CustodyCode, WireError> {
    use pb::custody_result::Code;
    Ok(match Code::try_from(v).map_err(|_| WireError::invalid("custody code", v))? {
        Code::Accepted => CustodyCode::Accepted,
        Code::RefusedBusy => CustodyCode::Busy,
        Code::RefusedPolicy => CustodyCode::Policy,
        Code::RefusedExpired => CustodyCode::Expired,
        Code::RefusedInvalid => CustodyCode::Invalid,
    })
}

pub(super) fn advert_to_pb(a: &Advert) -> pb::LinkState {
    pb::LinkState {
        node: a.node.to_string(),
        role: a.role.to_string(),
        seq: a.seq,
        lifetime_us: us(a.lifetime),
        links: a
            .links
            .iter()
            .map(|l| pb::AdvertLink {
                neighbour: l.neighbour.to_string(),
                medium: l.medium.to_string(),
                rtt_us: u32::try_from(us(l.rtt)).unwrap_or(u32::MAX),
                loss_ppm: l.loss_ppm,
                bandwidth_bps: l.bandwidth_bps,
                up: l.up,
            })
            .collect(),
        groups: a.groups.clone(),
        subscriptions: a.subscriptions.iter().map(|s| s.as_str().to_owned()).collect(),
        age_us: us(a.age),
        certificate: a.certificate.clone(),
        signature: a.signature.clone(),
        previous_certificates: a.previous_certificates.clone(),
        area: a.area.clone(),
        summary: a.summary.clone(),
    }
}

/// An area's name: empty (no area) or like a node id.
fn area(what: &'static str, s: String) -> Result<String, WireError> {
    if !s.is_empty() {
        NodeId::new(&s).map_err(|e| WireError::invalid(what, e))?;
    }
    Ok(s)
}

pub(super) fn area_summary_to_pb(members: &[AreaMember]) -> pb::AreaSummary {
    pb::AreaSummary {
        members: members
            .iter()
            .map(|m| pb::AreaMember {
                node: m.node.to_string(),
                role: m.role.to_string(),
                seq: m.seq,
                groups: m.groups.clone(),
                subscriptions: m.subscriptions.iter().map(|s| s.as_str().to_owned()).collect(),
                costs: m.costs.iter().map(|c| c.map_or(0, |c| c.saturating_add(1))).collect(),
            })
            .collect(),
    }
}

pub(super) fn area_summary_from_pb(s: pb::AreaSummary) -> Result<Vec<AreaMember>, WireError> {
    if s.members.len() > MAX_AREA_MEMBERS {
        return Err(WireError::invalid("area summary", "too many members"));
    }
    s.members
        .into_iter()
        .map(|m| {
            if m.groups.len() > 256 || m.subscriptions.len() > 4096 || m.costs.len() != 5 {
                return Err(WireError::invalid(
                    "area member",
                    "too many groups or subscriptions, or not five costs",
                ));
            }
            for g in &m.groups {
                crate::types::Group::parse(g)
                    .map_err(|e| WireError::invalid("area member group", e))?;
            }
            let subscriptions = m
                .subscriptions
                .iter()
                .map(|s| {
                    TopicPattern::new(s)
                        .map_err(|e| WireError::invalid("area member subscription", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut costs = [None; 5];
            for (c, v) in costs.iter_mut().zip(&m.costs) {
                *c = v.checked_sub(1);
            }
            Ok(AreaMember {
                node: node("area member", &m.node)?,
                role: m
                    .role
                    .parse::<Role>()
                    .map_err(|e| WireError::invalid("area member role", e))?,
                seq: m.seq,
                groups: m.groups,
                subscriptions,
                costs,
            })
        })
        .collect()
}

/// Most members one area summary may name.
pub const MAX_AREA_MEMBERS: usize = 100_000;

pub(super) fn advert_from_pb(a: pb::LinkState) -> Result<Advert, WireError> {
    if a.links.len() > 1024 || a.groups.len() > 256 || a.subscriptions.len() > 4096 {
        return Err(WireError::invalid("link state", "too many entries"));
    }
    let links = a
        .links
        .into_iter()
        .map(|l| {
            Ok(AdvertLink {
                neighbour: node("advert neighbour", &l.neighbour)?,
                medium: l
                    .medium
                    .parse::<Medium>()
                    .map_err(|e| WireError::invalid("advert medium", e))?,
                rtt: Duration::from_micros(u64::from(l.rtt_us)),
                loss_ppm: l.loss_ppm.min(1_000_000),
                bandwidth_bps: l.bandwidth_bps,
                up: l.up,
            })
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    for g in &a.groups {
        crate::types::Group::parse(g).map_err(|e| WireError::invalid("advert group", e))?;
    }
    let subscriptions = a
        .subscriptions
        .iter()
        .map(|s| TopicPattern::new(s).map_err(|e| WireError::invalid("advert subscription", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if a.certificate.len() > MAX_CERTIFICATE || a.signature.len() > 128 {
        return Err(WireError::invalid("link state", "certificate or signature too long"));
    }
    if a.previous_certificates.len() > crate::trust::MAX_PREVIOUS_KEYS
        || a.previous_certificates.iter().any(|c| c.len() > MAX_CERTIFICATE)
    {
        return Err(WireError::invalid("link state", "too many or too long previous certificates"));
    }
    Ok(Advert {
        node: node("advert node", &a.node)?,
        role: a.role.parse::<Role>().map_err(|e| WireError::invalid("advert role", e))?,
        seq: a.seq,
        lifetime: Duration::from_micros(a.lifetime_us),
        age: Duration::from_micros(a.age_us),
        links,
        groups: a.groups,
        subscriptions,
        certificate: a.certificate,
        signature: a.signature,
        previous_certificates: a.previous_certificates,
        area: area("advert area", a.area)?,
        summary: {
            // Checked here, so that what is held always reads back.
            if !a.summary.is_empty() {
                super::decode_area_summary(&a.summary)?;
            }
            a.summary
        },
    })
}

/// Acceptances as runs of consecutive offer numbers.
fn accepted_to_pb(list: &[Accepted]) -> pb::Accepted {
    let mut a = pb::Accepted::default();
    let mut fingerprints = Vec::with_capacity(2 * list.len());
    let mut end = 0u64; // the end of the previous run
    let mut i = 0;
    while i < list.len() {
        let first = list[i].offer;
        let mut len = 1;
        while i + len < list.len() && list[i + len].offer == first.wrapping_add(len as u64) {
            len += 1;
        }
        a.starts.push(first.wrapping_sub(end) as i64);
        a.lengths.push(len as u64);
        for x in &list[i..i + len] {
            fingerprints.extend_from_slice(&x.fingerprint);
        }
        end = first.wrapping_add(len as u64);
        i += len;
    }
    a.fingerprints = fingerprints.into();
    a
}

fn accepted_from_pb(a: pb::Accepted) -> Result<Vec<Accepted>, WireError> {
    let total: u64 = a.lengths.iter().try_fold(0u64, |t, &l| t.checked_add(l)).unwrap_or(u64::MAX);
    if a.starts.len() != a.lengths.len()
        || a.lengths.contains(&0)
        || total > MAX_ACCEPTED
        || a.fingerprints.len() as u64 != 2 * total
    {
        return Err(WireError::invalid(
            "accepted",
            format!(
                "{} runs with {} lengths, {total} offers, {} fingerprint bytes",
                a.starts.len(),
                a.lengths.len(),
                a.fingerprints.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(total as usize);
    let mut end = 0u64;
    let mut prints = a.fingerprints.chunks_exact(2);
    for (&start, &len) in a.starts.iter().zip(&a.lengths) {
        let first = end.wrapping_add(start as u64);
        for k in 0..len {
            let fp = prints.next().map(|c| [c[0], c[1]]).unwrap_or_default();
            out.push(Accepted { offer: first.wrapping_add(k), fingerprint: fp });
        }
        end = first.wrapping_add(len);
    }
    Ok(out)
}

/// Acceptances one `Accepted` frame may carry (as many as custody answers in `Custody`).
const MAX_ACCEPTED: u64 = 100_000;

pub(super) fn frame_to_pb(f: &Frame) -> pb::Frame {
    use pb::frame::Kind;
    let kind = match f {
        Frame::Offer { offer, envelope } => {
            Kind::Envelope(pb::Envelope { offer: *offer, ..envelope_to_pb(envelope) })
        }
        Frame::Custody(results) => Kind::Custody(pb::Custody {
            results: results
                .iter()
                .map(|r| pb::CustodyResult {
                    id: r.id.0.to_vec().into(),
                    code: code_to_pb(r.code) as i32,
                    reason: r.reason.clone(),
                    offer: r.offer,
                })
                .collect(),
        }),
        Frame::Accepted(list) => Kind::Accepted(accepted_to_pb(list)),
        Frame::Probe { seq, rtt_us, loss_ppm } => {
            Kind::Probe(pb::Probe { seq: *seq, rtt_us: *rtt_us, loss_ppm: *loss_ppm })
        }
        Frame::ProbeAck { seq } => Kind::ProbeAck(pb::ProbeAck { seq: *seq }),
        Frame::LinkState(a) => Kind::LinkState(advert_to_pb(a)),
        Frame::LsdbSummary { area, held } => Kind::LsdbSummary(pb::LsdbSummary {
            entries: held
                .iter()
                .map(|(n, seq)| pb::LsdbEntry { node: n.to_string(), seq: *seq })
                .collect(),
            area: area.clone(),
        }),
        Frame::Revocations(crl) => Kind::Revocations(pb::Revocations { crl: crl.clone() }),
    };
    pb::Frame { kind: Some(kind) }
}

pub(super) fn frame_from_pb(f: pb::Frame) -> Result<Frame, WireError> {
    use pb::frame::Kind;
    match f.kind {
        None => Err(WireError::invalid("frame", "empty or of an unknown kind")),
        Some(Kind::Hello(_)) => Err(WireError::invalid("frame", "hello after the handshake")),
        Some(Kind::CompactOffers(_)) => Err(WireError::invalid(
            "frame",
            "compact offers where they were not announced (capability compact-v1)",
        )),
        Some(Kind::Compressed(_)) => Err(WireError::invalid(
            "frame",
            "compressed frames where they were not announced (capability zstd-v1)",
        )),
        Some(Kind::Envelope(e)) => {
            let offer = e.offer;
            envelope_from_pb(e).map(|envelope| Frame::Offer { offer, envelope })
        }
        Some(Kind::Custody(c)) => {
            let results = c
                .results
                .into_iter()
                .map(|r| {
                    Ok(CustodyResult {
                        offer: r.offer,
                        id: id("custody id", &r.id)?,
                        code: code_from_pb(r.code)?,
                        reason: bounded("custody reason", r.reason, MAX_REASON)?,
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Ok(Frame::Custody(results))
        }
        Some(Kind::Accepted(a)) => accepted_from_pb(a).map(Frame::Accepted),
        Some(Kind::Probe(p)) => {
            Ok(Frame::Probe { seq: p.seq, rtt_us: p.rtt_us, loss_ppm: p.loss_ppm.min(1_000_000) })
        }
        Some(Kind::ProbeAck(p)) => Ok(Frame::ProbeAck { seq: p.seq }),
        Some(Kind::LinkState(a)) => advert_from_pb(a).map(Frame::LinkState),
        Some(Kind::LsdbSummary(s)) => {
            if s.entries.len() > 100_000 {
                return Err(WireError::invalid("lsdb summary", "too many entries"));
            }
            let entries = s
                .entries
                .into_iter()
                .map(|e| Ok((node("lsdb node", &e.node)?, e.seq)))
                .collect::<Result<Vec<_>, WireError>>()?;
            Ok(Frame::LsdbSummary { area: area("lsdb summary area", s.area)?, held: entries })
        }
        Some(Kind::Revocations(r)) => {
            if r.crl.is_empty() || r.crl.len() > MAX_CRL {
                return Err(WireError::invalid("revocations", "empty or longer than 1 MiB"));
            }
            Ok(Frame::Revocations(r.crl))
        }
    }
}

fn optional_node(what: &'static str, s: &str) -> Result<Option<NodeId>, WireError> {
    if s.is_empty() { Ok(None) } else { node(what, s).map(Some) }
}

pub(super) fn stored_to_pb(m: &StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        envelope: Some(envelope_to_pb(&m.envelope)),
        received_at_us: m.received_at.as_micros(),
        from_node: m.from.as_ref().map(ToString::to_string).unwrap_or_default(),
    }
}

pub(super) fn stored_from_pb(m: pb::StoredMessage) -> Result<StoredMessage, WireError> {
    let envelope = m.envelope.ok_or_else(|| WireError::invalid("stored message", "no envelope"))?;
    Ok(StoredMessage {
        envelope: envelope_from_pb(envelope)?,
        received_at: Time::from_micros(m.received_at_us),
        from: optional_node("stored from", &m.from_node)?,
    })
}

pub(super) fn inbox_to_pb(r: &InboxRecord) -> pb::InboxRecord {
    pb::InboxRecord {
        envelope: Some(envelope_to_pb(&r.envelope)),
        delivered_at_us: r.delivered_at.as_micros(),
        age_us: us(r.age),
        withdrawn: r.withdrawn.as_ref().map(|w| pb::Withdrawal {
            by: w.by.0.to_vec().into(),
            outcome: outcome_to_pb(w.outcome) as i32,
            reason: w.reason.clone(),
            at_us: w.at.as_micros(),
        }),
    }
}

pub(super) fn inbox_from_pb(r: pb::InboxRecord) -> Result<InboxRecord, WireError> {
    let envelope = r.envelope.ok_or_else(|| WireError::invalid("inbox record", "no envelope"))?;
    Ok(InboxRecord {
        envelope: envelope_from_pb(envelope)?,
        delivered_at: Time::from_micros(r.delivered_at_us),
        age: Duration::from_micros(r.age_us),
        withdrawn: r
            .withdrawn
            .map(|w| {
                Ok::<_, WireError>(Withdrawal {
                    by: id("withdrawn by", &w.by)?,
                    outcome: outcome_from_pb(w.outcome)?,
                    reason: w.reason,
                    at: Time::from_micros(w.at_us),
                })
            })
            .transpose()?,
    })
}

pub(super) fn tombstone_to_pb(t: &Tombstone) -> pb::Tombstone {
    pb::Tombstone {
        origin: t.origin.as_ref().map(ToString::to_string).unwrap_or_default(),
        by: t.by.0.to_vec().into(),
        outcome: outcome_to_pb(t.outcome) as i32,
        reason: t.reason.clone(),
        until_us: t.until.as_micros(),
    }
}

pub(super) fn tombstone_from_pb(t: pb::Tombstone) -> Result<Tombstone, WireError> {
    Ok(Tombstone {
        origin: optional_node("tombstone origin", &t.origin)?,
        by: id("tombstone by", &t.by)?,
        outcome: outcome_from_pb(t.outcome)?,
        reason: t.reason,
        until: Time::from_micros(t.until_us),
    })
}

pub(super) fn latest_key_to_pb(k: &LatestKey) -> pb::LatestKey {
    pb::LatestKey {
        id: k.id.0.to_vec().into(),
        created_us: k.created.as_micros(),
        until_us: k.until.as_micros(),
    }
}

pub(super) fn latest_key_from_pb(k: pb::LatestKey) -> Result<LatestKey, WireError> {
    Ok(LatestKey {
        id: id("key id", &k.id)?,
        created: Time::from_micros(k.created_us),
        until: Time::from_micros(k.until_us),
    })
}

pub(super) fn status_to_pb(s: &StatusRecord) -> pb::StatusRecord {
    pb::StatusRecord {
        id: s.id.0.to_vec().into(),
        to: s.to.clone(),
        precedence: s.precedence.map_or(0, |p| precedence_to_pb(p) as i32),
        accepted_at_us: s.accepted_at.as_micros(),
        destinations: s.destinations.iter().map(ToString::to_string).collect(),
        reports: s
            .reports
            .iter()
            .map(|r| pb::StatusReport {
                node: r.node.to_string(),
                outcome: outcome_to_pb(r.outcome) as i32,
                age_us: us(r.age),
                reason: r.reason.clone(),
                at_us: r.at.as_micros(),
                destinations: r.destinations.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        custody_at: s.custody_at.as_ref().map(ToString::to_string).unwrap_or_default(),
        lifetime_us: us(s.lifetime),
        receipt: s.receipt,
        cancelled_by: s.cancelled_by.map(|i| i.0.to_vec().into()).unwrap_or_default(),
        key: s.key.clone().unwrap_or_default(),
        replaces: s.replaces.map(|i| i.0.to_vec().into()).unwrap_or_default(),
        cancels: s.cancels.map(|i| i.0.to_vec().into()).unwrap_or_default(),
        replaced_by: s.replaced_by.map(|i| i.0.to_vec().into()).unwrap_or_default(),
    }
}

pub(super) fn status_from_pb(s: pb::StatusRecord) -> Result<StatusRecord, WireError> {
    Ok(StatusRecord {
        id: id("status id", &s.id)?,
        to: s.to,
        precedence: Some(precedence_from_pb(s.precedence)?),
        accepted_at: Time::from_micros(s.accepted_at_us),
        lifetime: Duration::from_micros(s.lifetime_us),
        receipt: s.receipt,
        destinations: s
            .destinations
            .iter()
            .map(|d| node("status destination", d))
            .collect::<Result<_, _>>()?,
        custody_at: optional_node("status custody", &s.custody_at)?,
        reports: s
            .reports
            .into_iter()
            .map(|r| {
                Ok(StatusReport {
                    node: node("status report node", &r.node)?,
                    outcome: outcome_from_pb(r.outcome)?,
                    age: Duration::from_micros(r.age_us),
                    reason: r.reason,
                    at: Time::from_micros(r.at_us),
                    destinations: nodes("status report destination", &r.destinations)?,
                })
            })
            .collect::<Result<_, WireError>>()?,
        cancelled_by: optional_id("status cancelled by", &s.cancelled_by)?,
        key: (!s.key.is_empty()).then_some(s.key),
        replaces: optional_id("status replaces", &s.replaces)?,
        cancels: optional_id("status cancels", &s.cancels)?,
        replaced_by: optional_id("status replaced by", &s.replaced_by)?,
    })
}

fn optional_id(what: &'static str, b: &[u8]) -> Result<Option<MessageId>, WireError> {
    if b.is_empty() { Ok(None) } else { id(what, b).map(Some) }
}
