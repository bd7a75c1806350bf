//! The `relaymesh` binary: see `relaymesh --help` and the crate documentation.

fn main() {
    std::process::exit(relaymesh::cli::main());
}
