//! The node configuration parser (`relaymesh::shell::config::parse`) on arbitrary UTF-8.
//!
//! Checks: never panics, on a good file or a bad one.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use relaymesh::core::Medium;
use relaymesh::shell::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(text, Path::new("/etc/relaymesh/node.toml")) {
        Ok(c) => {
            for m in Medium::ALL {
                let _ = c.transport(m);
                let _ = c.core.medium(m);
            }
            let _ = format!("{c:?}");
        }
        Err(e) => {
            // (The key may be empty: `"" = 1` is an unknown field whose name is empty.)
            let _ = e.to_string();
        }
    }
});
