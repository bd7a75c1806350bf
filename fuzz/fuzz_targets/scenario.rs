//! The simulator's scenario parser (`relaymesh_sim::scenario::parse`) on arbitrary UTF-8.
//!
//! Checks: never panics; an error's line number is within the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relaymesh_sim::scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match scenario::parse(text, "fuzz.toml") {
        Ok(sc) => {
            for n in &sc.nodes {
                assert!(sc.node_index(n.id.as_str()).is_some());
            }
            let _ = format!("{sc:?}");
        }
        Err(e) => {
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.matches('\n').count() + 1, "line {line}: {e:?}");
            }
            let _ = e.to_string();
        }
    }
});
