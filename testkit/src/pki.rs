//! A deployment's PKI in a temporary directory: a CA, node certificates, their credentials.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use relaymesh::core::{NodeId, Role};
use relaymesh::pki;
use relaymesh::shell::tls::Credentials;
use tempfile::TempDir;

/// What makes the CA and the node certificates.
#[derive(Debug, Clone)]
pub enum Tool {
    /// The `relaymesh` binary at this path (`pki init`, `pki issue`), as an operator would,
    /// with the CLI's default validity; it refuses to issue a node twice.
    Cli(PathBuf),
    /// The library functions behind the CLI, with this validity in days for the CA and each
    /// node; issuing a node again replaces its certificate and key.
    Library {
        /// Validity of the CA and of every node certificate.
        days: u64,
    },
}

/// A temporary directory (removed on drop) with a deployment CA in its `pki/` directory and
/// room beside it for the nodes' configurations, data and logs.
#[derive(Debug)]
pub struct Pki {
    /// The temporary directory.
    pub dir: TempDir,
    tool: Tool,
}

impl Pki {
    /// A fresh temporary directory (its name starting with `prefix`) and a CA made by `tool`.
    pub fn new(prefix: &str, tool: Tool) -> Result<Pki> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(std::env::temp_dir())?;
        let kit = Pki { dir, tool };
        let pki = kit.pki_dir();
        match &kit.tool {
            Tool::Cli(bin) => run(bin, &["pki", "init", "--dir", path_str(&pki)?])?,
            Tool::Library { days } => {
                pki::init(&pki, false, *days)?;
            }
        }
        Ok(kit)
    }

    /// The temporary directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The PKI directory (`ca.crt`, `<node>.crt`, `<node>.key`, `crl.pem`).
    pub fn pki_dir(&self) -> PathBuf {
        self.root().join("pki")
    }

    /// Issues node `id` a certificate for `role`.
    pub fn issue(&self, id: &str, role: Role) -> Result<()> {
        let pki = self.pki_dir();
        match &self.tool {
            Tool::Cli(bin) => run(
                bin,
                &["pki", "issue", "--dir", path_str(&pki)?, "--node", id, "--role", role.as_str()],
            ),
            Tool::Library { days } => {
                let validity = pki::Validity::days_from(SystemTime::now(), *days);
                pki::issue(&pki, &NodeId::new(id)?, role, true, validity)?;
                Ok(())
            }
        }
    }

    /// Loads node `id`'s credentials (issued before) with the CA as trust anchor.
    pub fn credentials(&self, id: &str) -> Result<Credentials> {
        let node = NodeId::new(id)?;
        let (cert, key) = pki::node_paths(&self.pki_dir(), &node);
        Ok(Credentials::load(&self.pki_dir().join("ca.crt"), &cert, &key, &node)?)
    }

    /// Issues node `id` a certificate for `role` and loads its credentials.
    pub fn issue_credentials(&self, id: &str, role: Role) -> Result<Credentials> {
        self.issue(id, role)?;
        self.credentials(id)
    }

    /// Leaves the temporary directory in place when this is dropped; returns its path.
    pub fn keep(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.root().to_owned()
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))
}

/// Runs `bin args...` and insists on success.
fn run(bin: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin).args(args).output().with_context(|| format!("run {bin:?}"))?;
    if !out.status.success() {
        bail!("relaymesh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_issues_loadable_credentials_and_issues_again_over_them() {
        let pki = Pki::new("relaymesh-testkit", Tool::Library { days: 1 }).unwrap();
        assert!(pki.pki_dir().join("ca.crt").exists());
        let creds = pki.issue_credentials("township-01", Role::Township).unwrap();
        assert_eq!(creds.identity.node.as_str(), "township-01");
        assert_eq!(creds.identity.role, Role::Township);
        pki.issue("township-01", Role::Township).unwrap();
        let root = pki.root().to_owned();
        drop(pki);
        assert!(!root.exists(), "the temporary directory is removed on drop");
    }
}
