//! Large objects: chunks custodied like messages, one inbox item at the destination.

use super::*;
use crate::objects::{OBJECT_CONTENT_TYPE, ObjectProgress, ObjectSubmission, sha256};

/// `size` bytes that differ from chunk to chunk.
fn content(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]).collect()
}

fn object(to: &str, data: &[u8], chunk_size: u32, lifetime: Duration) -> ObjectSubmission {
    ObjectSubmission {
        to: Address::parse(to).unwrap(),
        precedence: Precedence::Routine,
        lifetime,
        receipt: true,
        status: TrafficStatus::Actual,
        name: "photo.jpg".into(),
        content_type: "image/jpeg".into(),
        size: data.len() as u64,
        zstd: false,
        sha256: sha256(data),
        chunk_size,
        chunks: data.chunks(chunk_size as usize).map(Bytes::copy_from_slice).collect(),
    }
}

impl Harness {
    fn submit_object(&mut self, from: &str, sub: ObjectSubmission) -> MessageId {
        let now = self.now;
        let id = self.node(from).handle_submit_object(now, sub).unwrap();
        self.node(from).commit(now).unwrap();
        id
    }

    fn progress(&mut self, name: &str, id: &MessageId) -> ObjectProgress {
        self.node(name).object_progress(id).unwrap().unwrap_or_default()
    }

    /// The object's bytes as `name` serves them.
    fn read_object(&mut self, name: &str, id: &MessageId) -> Vec<u8> {
        let manifest = self.node(name).object_manifest(id).unwrap().expect("delivered");
        let mut out = Vec::new();
        for i in 0..manifest.chunks.len() as u32 {
            out.extend_from_slice(&self.node(name).object_chunk(id, i).unwrap().unwrap());
        }
        out
    }

    /// Runs a millisecond at a time until `name` holds at least `n` chunks of `id`.
    fn run_until_received(&mut self, name: &str, id: &MessageId, n: u32) {
        for _ in 0..100_000 {
            if self.progress(name, id).received >= n {
                return;
            }
            self.run_for(MS);
        }
        panic!("{name} never held {n} chunks");
    }

    fn object_items(&mut self, name: &str) -> Vec<InboxItem> {
        let items = self.node(name).inbox(None, 1_000_000).unwrap();
        items
            .into_iter()
            .filter(|i| i.record.envelope.content_type == OBJECT_CONTENT_TYPE)
            .collect()
    }

    fn offers_from(&self, name: &str) -> usize {
        self.offers_seen.iter().filter(|(n, _)| n == name).count()
    }
}

#[test]
fn an_object_crosses_two_hops_in_chunks_and_arrives_as_one_inbox_item_with_one_receipt() {
    let mut h = three_in_a_row();
    let data = content(300 * 1024 + 123);
    let id = h.submit_object("a", object("node:c", &data, 16 * 1024, Duration::from_secs(600)));
    assert_eq!(h.progress("a", &id).sent, Some((19, 0)), "19 chunks, none passed on yet");
    h.run_for(Duration::from_secs(5));

    let items = h.object_items("c");
    assert_eq!(items.len(), 1);
    assert_eq!(h.node("c").inbox(None, 100).unwrap().len(), 1, "chunks are not inbox items");
    assert_eq!(items[0].record.envelope.id, id, "the object's id is its manifest's");
    assert_eq!(h.delivered_ids("c"), vec![id], "one delivery");
    assert_eq!(h.read_object("c", &id), data);
    let p = h.progress("c", &id);
    assert_eq!((p.received, p.total(), p.delivered), (19, Some(19), Some(items[0].cursor)));
    assert_eq!(p.manifest.unwrap().name, "photo.jpg");

    let status = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(status.state, "delivered", "one receipt, for the whole object");
    assert_eq!(h.progress("a", &id).sent, Some((19, 19)));
    assert_eq!(h.node("a").held_messages(), 0);
    assert_eq!(h.node("b").held_messages(), 0);
    assert_eq!(h.offers_from("a"), 20, "the manifest and 19 chunks, each offered once");
}

#[test]
fn a_cut_keeps_every_chunk_already_across_and_a_crashed_relay_resumes() {
    let mut h = three_in_a_row();
    let data = content(64 * 16 * 1024);
    let id = h.submit_object("a", object("node:c", &data, 16 * 1024, Duration::from_secs(600)));
    h.run_until_received("c", &id, 10);
    let across = h.progress("c", &id).received;
    assert!(across < 64, "cut half way, not after: {across}");
    let bc = 1;
    h.disconnect(bc);
    h.run_for(Duration::from_secs(2));
    h.crash("b");
    h.open("b");
    assert_eq!(h.progress("c", &id).received, across, "what crossed stays across");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.connect("b", "c", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(10));

    assert_eq!(h.delivered_ids("c"), vec![id], "delivered once");
    assert_eq!(h.read_object("c", &id), data);
    assert_eq!(h.offers_from("a"), 65, "a resent nothing: b kept what it had taken");
    // Of what b had offered c, only what was in flight when the cut came (its answers were
    // lost: at most a window, 512 KiB on wireless, 32 chunks and the manifest) goes again.
    let again = h.offers_from("b") - 65;
    assert!(again <= 33, "b offered {again} again");
    assert_eq!(h.node("a").message_status(&id).unwrap().unwrap().state, "delivered");
}

#[test]
fn an_object_that_runs_out_of_lifetime_incomplete_is_dropped_and_its_origin_told_how_much_arrived()
{
    let mut h = three_in_a_row();
    let data = content(40 * 16 * 1024);
    let id = h.submit_object("a", object("node:c", &data, 16 * 1024, Duration::from_secs(120)));
    h.run_until_received("c", &id, 5);
    h.disconnect(1);
    let got = h.progress("c", &id).received;
    assert!(got < 40);
    assert!(h.progress("c", &id).manifest.is_some(), "the manifest went first");
    // Dropped when its lifetime ends (120 s), not at the next minute's housekeeping.
    h.run_for(Duration::from_secs(121));
    // A way back for c's report (the chunks at b have expired by now).
    h.connect("a", "c", Medium::Public, 10 * MS);
    h.run_for(Duration::from_secs(5));

    assert!(h.object_items("c").is_empty());
    assert_eq!(h.node("c").object_progress(&id).unwrap(), None, "forgotten at c");
    assert_eq!(h.node("c").object_chunk(&id, 0).unwrap(), None, "its chunks went");
    let status = h.node("a").message_status(&id).unwrap().unwrap();
    assert_eq!(status.state, "expired", "{status:?}");
    let why = &status.destinations[0].reason;
    assert!(why.contains(&format!("{got} of 40 chunks arrived")), "{why}");
}

#[test]
fn an_object_to_a_group_reaches_each_member_once() {
    let mut h = three_in_a_row();
    let data = content(100_000);
    let id = h.submit_object("a", object("group:all", &data, 16 * 1024, Duration::from_secs(600)));
    h.run_for(Duration::from_secs(5));
    for name in ["a", "b", "c"] {
        assert_eq!(h.delivered_ids(name), vec![id], "{name}");
        assert_eq!(h.read_object(name, &id), data, "{name}");
    }
}

#[test]
fn an_object_is_admitted_whole_or_not_at_all() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("a"), Role::Field);
    cfg.limits.max_bytes = 1024 * 1024;
    cfg.max_object = 4 * 1024 * 1024;
    h.add_with(cfg).add("b", Role::Township);
    let now = h.now;
    let big = content(2 * 1024 * 1024);
    let err = h
        .node("a")
        .handle_submit_object(now, object("node:b", &big, 16 * 1024, Duration::from_secs(60)))
        .unwrap_err();
    assert!(matches!(err, SubmitError::Refused(_)), "{err}");
    h.node("a").commit(now).unwrap();
    assert_eq!(h.node("a").held_messages(), 0, "not one chunk kept");
    assert!(h.node("a").sent(now, 10).unwrap().is_empty());

    let huge = content(5 * 1024 * 1024);
    let err = h
        .node("a")
        .handle_submit_object(now, object("node:b", &huge, 256 * 1024, Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(
        err,
        SubmitError::Invalid(
            "object of 5242880 bytes exceeds [limits] max_object of 4194304 bytes".into()
        )
    );
    // An object is not cancelled or replaced through its manifest alone.
    let small = content(40_000);
    let id = h.submit_object("a", object("node:b", &small, 16 * 1024, Duration::from_secs(60)));
    let now = h.now;
    let err = h.node("a").handle_cancel(now, id, "wrong file".into(), None).unwrap_err();
    assert!(err.to_string().contains("objects cannot be cancelled or replaced yet"), "{err}");
    let mut replacement = Submission {
        to: Address::parse("node:b").unwrap(),
        precedence: Precedence::Routine,
        lifetime: Duration::from_secs(60),
        content_type: "text/plain".into(),
        payload: Bytes::from_static(b"instead"),
        receipt: false,
        status: TrafficStatus::Actual,
        key: None,
        replaces: Some(id),
    };
    assert!(matches!(
        h.node("a").handle_submit(now, replacement.clone()),
        Err(SubmitError::Invalid(_))
    ));
    replacement.replaces = None;
    // The objects' content types are not for messages.
    let sub = Submission { content_type: crate::objects::CHUNK_CONTENT_TYPE.into(), ..replacement };
    assert!(matches!(h.node("a").handle_submit(now, sub), Err(SubmitError::Invalid(_))));
}

#[test]
fn a_read_object_goes_with_its_chunks_when_its_inbox_item_is_pruned() {
    let mut h = Harness::new();
    let mut cfg = CoreConfig::new(n("b"), Role::Township);
    cfg.inbox_keep = 0;
    h.add("a", Role::Command).add_with(cfg);
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    let data = content(50_000);
    let id = h.submit_object("a", object("node:b", &data, 16 * 1024, Duration::from_secs(600)));
    h.run_for(Duration::from_secs(2));
    let cursor = h.object_items("b")[0].cursor;
    h.node("b").handle_inbox_read(cursor);
    h.run_for(Duration::from_secs(120));
    assert!(h.object_items("b").is_empty());
    assert_eq!(h.node("b").object_chunk(&id, 0).unwrap(), None);
    assert_eq!(h.node("b").object_progress(&id).unwrap(), None);
}

#[test]
fn a_chunk_a_relay_alters_is_refused_as_a_forgery_and_the_relay_cut_off() {
    let (mut h, _pki) = super::security::secure_chain(&[
        ("a", Role::Command),
        ("b", Role::Relay),
        ("c", Role::Township),
    ]);
    h.tamper = Some("b".into());
    let data = content(40_000);
    let id = h.submit_object("a", object("node:c", &data, 16 * 1024, Duration::from_secs(60)));
    h.run_for(Duration::from_secs(2));
    assert!(h.delivered_ids("c").is_empty());
    assert_eq!(h.progress("c", &id).received, 0, "no altered chunk was stored");
    assert!(h.node("c").counters.forged >= 1);
    let cut = super::security::misbehaved(&h, "c");
    assert!(cut.iter().any(|(p, why)| p == &n("b") && why.contains("bad signature")), "{cut:?}");
}

#[test]
fn a_manifest_checks_index_length_and_hash_of_every_chunk() {
    let data = content(40_000);
    let sub = object("node:c", &data, 16 * 1024, Duration::from_secs(60));
    let manifest = crate::objects::Manifest {
        name: sub.name,
        content_type: sub.content_type,
        size: 40_000,
        zstd: false,
        encoded_size: 40_000,
        chunk_size: 16 * 1024,
        chunks: sub.chunks.iter().map(|c| sha256(c)).collect(),
        sha256: sub.sha256,
    };
    manifest.check().unwrap();
    assert!(manifest.verify(2, &sub.chunks[2]).is_ok());
    let e = manifest.verify(3, &sub.chunks[2]).unwrap_err();
    assert!(e.contains("out of range"), "{e}");
    let e = manifest.verify(1, &sub.chunks[2]).unwrap_err();
    assert!(e.contains("has 7232 bytes, not 16384"), "{e}");
    let mut altered = sub.chunks[0].to_vec();
    altered[7] ^= 1;
    let e = manifest.verify(0, &altered).unwrap_err();
    assert!(e.contains("does not match"), "{e}");
    let bad = crate::objects::Manifest { encoded_size: 80_000, ..manifest.clone() };
    assert!(bad.check().unwrap_err().contains("cannot hold"));
    for name in ["", "../etc/passwd", "a/b", ".hidden"] {
        let bad = crate::objects::Manifest { name: name.into(), ..manifest.clone() };
        assert!(bad.check().is_err(), "{name:?}");
    }
}

#[test]
fn a_destination_whose_disk_fills_mid_object_keeps_what_it_has_and_loses_nothing() {
    let mut h = three_in_a_row();
    let data = content(48 * 16 * 1024);
    let id = h.submit_object("a", object("node:c", &data, 16 * 1024, Duration::from_secs(600)));
    h.run_until_received("c", &id, 8);
    h.faults["c"].lock().unwrap().full = true;
    h.run_for(Duration::from_secs(5));
    let stuck = h.progress("c", &id).received;
    assert!(stuck < 48, "c took chunks on a full disk");
    assert!(h.node("b").held_messages() > 0, "b keeps what c could not store");
    assert!(h.delivered_ids("c").is_empty());
    h.faults["c"].lock().unwrap().full = false;
    h.run_for(Duration::from_secs(60));
    assert_eq!(h.delivered_ids("c"), vec![id], "whole, once");
    assert_eq!(h.read_object("c", &id), data);
    assert_eq!(h.node("b").held_messages(), 0);
}

#[test]
fn the_origin_counts_what_passed_on_across_a_restart() {
    let mut h = Harness::new();
    h.add("a", Role::Field).add("b", Role::Command);
    let data = content(10 * 16 * 1024);
    let id = h.submit_object("a", object("node:b", &data, 16 * 1024, Duration::from_secs(600)));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.progress("a", &id).sent, Some((10, 0)), "no route yet: all held");
    h.crash("a");
    h.open("a");
    assert_eq!(h.progress("a", &id).sent, Some((10, 0)), "counted again from the store");
    h.connect("a", "b", Medium::Wireless, 10 * MS);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.progress("a", &id).sent, Some((10, 10)));
    assert_eq!(h.delivered_ids("b"), vec![id]);
}
