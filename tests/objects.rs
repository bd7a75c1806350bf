//! Large objects with real relay processes: `send --file` at a field terminal, a relay killed
//! with -9 half way, `listen --save-dir` at the county; the file comes out byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use relaymesh::api_model::{InboxDoc, ObjectProgressDoc, ObjectsDoc};

/// `size` bytes that do not compress (a photo, as far as zstd can tell).
fn noise(size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn progress(node: &Relay, id: &str) -> Option<ObjectProgressDoc> {
    let r = http().get(format!("{}/v1/objects/{id}/progress", node.spec.api_url())).send().unwrap();
    (r.status() == 200).then(|| r.json().unwrap())
}

fn send_file(node: &Relay, to: &str, path: &Path) -> (String, String) {
    let out = node.send_cli(&["--to", to, "--file", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "send --file failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap().trim().to_owned(), stderr)
}

/// `listen --save-dir dir --count n` at `node`; its lines.
fn listen_save(node: &Relay, dir: &Path, n: u32) -> String {
    let api = node.spec.api_url();
    let out = Command::new(&*BIN)
        .args(["listen", "--api", &api, "--save-dir", dir.to_str().unwrap()])
        .args(["--count", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "listen: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_file_crosses_a_relay_killed_mid_transfer_and_is_saved_byte_for_byte() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    // The relay passes 2 MB/s on to the county: the transfer takes seconds, long enough to kill
    // the relay in the middle of it.
    let relay = mesh
        .node("relay-01", "relay", "public")
        .peer(&hq)
        .extra("[media.public]\nrate = \"16Mbps\"\n");
    let field = mesh.node("team-07", "field", "public").peer(&relay);
    let (mut hq, mut relay, mut field) = (hq.start(), relay.start(), field.start());
    relay.wait_link("county-hq");
    field.wait_link("relay-01");
    hq.wait_link("relay-01");

    let photo = noise(6_000_000);
    let path = mesh.dir.path().join("drone-0042.jpg");
    std::fs::write(&path, &photo).unwrap();
    let (id, said) = send_file(&field, "node:county-hq", &path);
    assert!(said.contains("6000000 bytes, 23 chunks of 256 KiB"), "{said}");
    assert!(!said.contains("zstd"), "a photo does not compress: {said}");

    let received = |hq: &Relay| progress(hq, &id).map_or(0, |p| p.received);
    wait_for("a quarter of the chunks at the county", Duration::from_secs(60), || {
        (received(&hq) >= 6).then_some(())
    });
    relay.kill();
    let before = received(&hq);
    assert!(before < 23, "the relay was killed after the transfer: {before}");
    // The county lists it as arriving, with its progress.
    let list: ObjectsDoc =
        http().get(format!("{}/v1/objects", hq.spec.api_url())).send().unwrap().json().unwrap();
    let arriving = &list.objects[0];
    assert_eq!(arriving.id, id, "{list:?}");
    assert_eq!(arriving.object.as_ref().map(|o| o.name.as_str()), Some("drone-0042.jpg"));
    let summary = &arriving.summary;
    assert!(summary.starts_with("chunks ") && summary.ends_with("/23 received"), "{summary}");
    let status = cli_ok(&["status", "--api", &hq.spec.api_url()]);
    assert!(status.contains(&format!("{} drone-0042.jpg: {summary}", &id[..8])), "{status}");
    relay.restart();
    relay.wait_link("county-hq");

    let dir = mesh.dir.path().join("saved");
    let line = listen_save(&hq, &dir, 1);
    assert!(
        line.contains("object drone-0042.jpg (6000000 bytes of image/jpeg) saved as"),
        "{line}"
    );
    let saved = std::fs::read(dir.join("drone-0042.jpg")).unwrap();
    assert_eq!(sha256(&saved), sha256(&photo), "the same bytes");

    // One inbox item, one receipt; the field terminal passed each chunk on once.
    let inbox = hq.inbox_all();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0].object.as_ref().unwrap().sha256, sha256(&photo));
    assert_eq!(field.message(&id, "30s").state, "delivered");
    let p = progress(&field, &id).unwrap();
    assert_eq!((p.sent_chunks, p.passed_on), (Some(23), Some(23)));
    assert!(p.summary.contains("delivered"), "{p:?}");
    // The bytes are served again, whole.
    let r = http().get(format!("{}/v1/objects/{id}", hq.spec.api_url())).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(sha256(&r.bytes().unwrap()), sha256(&photo));
    hq.stop();
    field.stop();
}

#[test]
fn objects_compress_where_it_pays_and_bad_uploads_are_refused_whole() {
    let mesh = Mesh::new();
    let (hq, t1) = mesh.linked_pair("");
    let t1 = {
        let mut t1 = t1;
        t1.spec.extra = "[limits]\nmax_object = \"3MB\"\n\n[store]\nmax_bytes = \"2MB\"\n".into();
        t1.restart();
        t1.wait_link("county-hq");
        t1
    };

    // A situation report of repetitive text goes compressed, and comes out as it went in.
    let report: String =
        (0..20_000).map(|i| format!("sector {} water level {} cm\n", i % 40, i % 7)).collect();
    let path = mesh.dir.path().join("sitrep.txt");
    std::fs::write(&path, &report).unwrap();
    let (id, said) = send_file(&t1, "node:county-hq", &path);
    assert!(said.contains("with zstd"), "{said}");
    let dir = mesh.dir.path().join("saved");
    let line = listen_save(&hq, &dir, 1);
    assert!(line.contains("object sitrep.txt"), "{line}");
    assert_eq!(std::fs::read_to_string(dir.join("sitrep.txt")).unwrap(), report);
    assert!(hq.inbox_all()[0].object.as_ref().unwrap().zstd);
    assert_eq!(t1.message(&id, "30s").state, "delivered");

    // An object that cannot be written stops `listen`, but not before what came ahead of it
    // was printed, and it stays unread for the next try.
    t1.submit("node:county-hq", "flash", "EVACUATE SECTOR 4").unwrap();
    wait_for("the order at the county", Duration::from_secs(30), || {
        (hq.inbox_all().len() == 2).then_some(())
    });
    let (again, _) = send_file(&t1, "node:county-hq", &path);
    wait_for("the report again", Duration::from_secs(30), || {
        (hq.inbox_all().len() == 3).then_some(())
    });
    let blocked = mesh.dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let out = Command::new(&*BIN)
        .args(["listen", "--api", &hq.spec.api_url(), "--save-dir", blocked.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EVACUATE SECTOR 4"));
    let unread: InboxDoc =
        http().get(format!("{}/v1/inbox", hq.spec.api_url())).send().unwrap().json().unwrap();
    let unread: Vec<&str> = unread.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unread, vec![again.as_str()], "the order read, the object not");
    let line = listen_save(&hq, &dir, 1);
    assert!(
        line.contains(&format!(
            "saved as {}",
            dir.join(format!("sitrep.{}.txt", &again[..8])).display()
        )),
        "{line}"
    );

    // Over max_object: 413 naming the limit, and `send` exits 2.
    let big = mesh.dir.path().join("big.bin");
    std::fs::write(&big, noise(3_500_000)).unwrap();
    let out = t1.send_cli(&["--to", "node:county-hq", "--file", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exceeds [limits] max_object of 3000000 bytes"), "{stderr}");

    // Room for part of it only: 503, nothing kept.
    let part = mesh.dir.path().join("part.bin");
    std::fs::write(&part, noise(2_500_000)).unwrap();
    let out = t1.send_cli(&["--to", "node:county-hq", "--file", part.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(t1.status().held_bytes, 0, "not a chunk of it kept");

    // No address, a path for a name, a misspelt parameter (an error, not a default): 400;
    // an unknown object: 404.
    let url = t1.spec.api_url();
    let post = |query: &str| {
        let r = http().post(format!("{url}/v1/objects{query}")).body("x").send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(post("").0, 400);
    let (code, why) = post("?to=node:county-hq&name=../../etc/passwd");
    assert_eq!(code, 400);
    assert!(why.contains("without directories"), "{why}");
    let (code, why) = post("?to=node:county-hq&nmae=a.txt");
    assert_eq!(code, 400);
    assert!(why.contains("nmae"), "{why}");
    let r = http().get(format!("{url}/v1/objects/{}", "0".repeat(32))).send().unwrap();
    assert_eq!(r.status(), 404);
}
