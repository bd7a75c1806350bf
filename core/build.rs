//! Compiles `proto/relaymesh.proto` with protox (pure Rust), so no system `protoc` is needed,
//! and refuses to build the core with tokio, quinn or redb among its own dependencies: the
//! core is sans-IO, and a dependency added to its manifest is a build error here (one that
//! arrives through another crate, or under a name the workspace gave it, is caught by
//! `.ci/run`'s dependency-tree check).

/// Crates the core may never depend on.
const FORBIDDEN: [&str; 4] = ["tokio", "quinn", "quinn-proto", "redb"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=Cargo.toml");
    let manifest: toml::Table = std::fs::read_to_string("Cargo.toml")?.parse()?;
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

/// The first forbidden crate among the manifest's dependencies, of every kind and target,
/// by name or by `package = "..."`.
fn forbidden(manifest: &toml::Table) -> Option<String> {
    let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
    let targets = manifest.get("target").and_then(|t| t.as_table());
    let tables = std::iter::once(manifest)
        .chain(targets.into_iter().flat_map(|t| t.values().filter_map(|v| v.as_table())));
    tables
        .flat_map(|t| kinds.iter().filter_map(|k| t.get(*k).and_then(|d| d.as_table())))
        .flat_map(|deps| deps.iter())
        .map(|(name, spec)| spec.get("package").and_then(|p| p.as_str()).unwrap_or(name))
        .find(|name| FORBIDDEN.contains(name))
        .map(str::to_owned)
}
