//! Compiles `proto/relaymesh.proto` with protox (pure Rust), so no system `protoc` is needed,
//! and refuses to build the core with tokio, quinn or redb among its own dependencies: the
//! core is sans-IO, and a dependency added to its manifest is a build error here (one that
//! arrives through another crate is caught by `.ci/run`'s dependency-tree check).

/// Crates the core may never depend on.
const FORBIDDEN: [&str; 4] = ["tokio", "quinn", "quinn-proto", "redb"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=Cargo.toml");
    let manifest = std::fs::read_to_string("Cargo.toml")?;
    if let Some(found) = forbidden(&manifest) {
        return Err(format!(
            "relaymesh-core depends on {found}: the core is sans-IO and may not depend on {}",
            FORBIDDEN.join(", ")
        )
        .into());
    }
    println!("cargo:rerun-if-changed=../proto/relaymesh.proto");
    let fds = protox::compile(["relaymesh.proto"], ["../proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}

/// The first forbidden crate a dependency table of `manifest` names, as `name = ...`,
/// `[dependencies.name]` or `package = "name"`.
fn forbidden(manifest: &str) -> Option<String> {
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            in_deps = header.contains("dependencies");
            if let Some(name) =
                header.rsplit('.').next().filter(|_| header.contains("dependencies."))
                && FORBIDDEN.contains(&name.trim_matches('"'))
            {
                return Some(name.trim_matches('"').to_owned());
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or("").trim().trim_matches('"');
        if FORBIDDEN.contains(&key) {
            return Some(key.to_owned());
        }
        if let Some(pkg) = line.split("package").nth(1)
            && let Some(name) = pkg.split('"').nth(1)
            && FORBIDDEN.contains(&name)
        {
            return Some(name.to_owned());
        }
    }
    None
}
