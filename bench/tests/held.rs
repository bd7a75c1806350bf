//! `relaymesh-bench held`: a relay whose store was filled through its core starts forwarding
//! its backlog to the next hop. (It once filled the store unsealed, and the next hop refused
//! every message: "nothing forwarded within 60 s".)

use std::process::Command;

#[test]
fn a_relay_filled_through_its_core_forwards_its_backlog() {
    let out = Command::new(env!("CARGO_BIN_EXE_relaymesh-bench"))
        .args(["held", "--messages", "300"])
        .output()
        .expect("run relaymesh-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "held failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with('{')).expect("a JSON result line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(v["messages"], 300);
    assert!(v["restart_to_forward_s"].as_f64().is_some_and(|s| s < 60.0), "{line}");
}
