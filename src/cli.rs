//! The `relaymesh` command line. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad
//! input, always with a one-line reason on stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::api_model::{
    CancelDoc, CancelRequest, ErrorDoc, GroupChangeDoc, GroupRequest, GroupsDoc, InboxDoc,
    InboxMessageDoc, MessageDoc, PatternRequest, ReadRequest, StatusDoc, SubmitDoc, SubmitRequest,
};
use serde_json::Value;

use crate::core::{NodeId, Precedence, Role};
use crate::gateway;
use crate::logging::LogFormat;
use crate::pki;
use crate::shell::{self, Dial, Listener, RelaySpec, clock::Clock, config, redb_store::RedbStore};
use crate::units::{format_bytes, parse_duration};

/// Writes a line to standard output; a closed pipe (`relaymesh status | head`) ends the
/// command quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(stdout_failure)?
    }};
}

/// Standard output failed: quietly if the reader went away, else a runtime failure.
fn stdout_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure { code: 0, message: String::new() }
    } else {
        Failure::runtime(format!("standard output: {e}"))
    }
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(m: impl std::fmt::Display) -> Failure {
        Failure { code: 2, message: m.to_string() }
    }
    pub fn runtime(m: impl std::fmt::Display) -> Failure {
        Failure { code: 1, message: m.to_string() }
    }
}

type Outcome = Result<(), Failure>;

#[derive(Parser, Debug)]
#[command(
    name = "relaymesh",
    version,
    about = "Mesh relay and message bus for emergency command networks"
)]
pub struct Cli {
    /// Log lines as text, or one JSON object per line for a log collector.
    #[arg(long, global = true, env = "RELAYMESH_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Deployment CA and node certificates.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Run a relay node.
    Run {
        /// Node configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a node configuration without starting the node.
    ///
    /// Checks the configuration and the certificate, key, CA and revocation list it names as
    /// `run` does: exit 2 with the reason `run` would give, 0 if it would start.
    Check {
        /// Node configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Send a message through the local node; prints its id.
    Send(SendArgs),
    /// Recall a message wherever it still travels; prints the cancel's id.
    ///
    /// Held copies are dropped, a delivered copy is marked cancelled in the recipient's
    /// inbox, and a copy that arrives after the cancel is never delivered. Only the message's
    /// origin may cancel it, unless `[policy] override_roles` lets this node's role. A message
    /// not seen here yet is cancelled when it arrives (pending).
    Cancel(CancelArgs),
    /// Print the unread inbox, then follow new messages.
    Listen(ListenArgs),
    /// Neighbours, links, routes and queues of the local node.
    Status(StatusArgs),
    /// Join or leave a named group on the local node (durable, advertised signed to the
    /// mesh), or list its groups.
    Group(GroupArgs),
    /// Print a shell completion script.
    ///
    /// For bash, zsh, fish, elvish or powershell, e.g.
    /// `relaymesh completions bash > /etc/bash_completion.d/relaymesh`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), or write every page.
    ///
    /// `relaymesh man | man -l -` shows the main page; `--dir D` writes relaymesh.1 and a
    /// page for every command (relaymesh-send.1, relaymesh-pki-renew.1, ...) into D.
    Man {
        /// Write all pages into this directory (printing their paths) instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Create the deployment CA (DIR/ca.crt, DIR/ca.key).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Replace an existing CA key.
        #[arg(long)]
        force: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Revoke a node's certificate: writes the CA's next revocation list to DIR/crl.pem.
    /// Nodes load it from there (or from their `crl` setting) and pass it on through the mesh.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
    },
    /// Retire a node for good (it is no longer a member of any group or topic, and its links
    /// are refused): writes the CA's next revocation list, reason "cessation of operation".
    Decommission {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
    },
    /// Renew a node's certificate: same role, new validity, same key (or a new one).
    ///
    /// Replaces DIR/<id>.crt (and DIR/<id>.key with --new-key). A revoked or decommissioned
    /// node is refused (exit 2). A running node picks the new certificate up on SIGHUP or when
    /// the files change; with a new key, what it signed with the old one stays valid for the
    /// rest of those messages' lifetimes.
    Renew {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
        /// Validity in days, from now.
        #[arg(long, default_value_t = 825)]
        days: u64,
        /// Give the node a new key (key rotation) instead of certifying the one it has.
        #[arg(long)]
        new_key: bool,
    },
    /// Issue a node certificate (DIR/<id>.crt, DIR/<id>.key).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
        /// command, township, field or relay.
        #[arg(long)]
        role: String,
        #[arg(long)]
        force: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u64,
    },
}

#[derive(Args, Debug, Clone)]
struct ApiArgs {
    /// The node's local API: `host:port` or `http://host:port`.
    #[arg(long, env = "RELAYMESH_API", default_value = "http://127.0.0.1:7480")]
    api: String,
    /// API token, if the node requires one.
    #[arg(long, env = "RELAYMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug)]
struct SendArgs {
    /// node:<id>, group:<name> or topic:<path>.
    #[arg(long)]
    to: String,
    /// flash, immediate, priority or routine.
    #[arg(long, short, default_value = "routine")]
    precedence: String,
    /// How long the message may take to arrive (e.g. 90s, 1h).
    #[arg(long, default_value = "1h")]
    lifetime: String,
    /// Wait for the delivery report; exit 1 if the message expires or is refused, or at once
    /// if its address has no member (no_recipients).
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (default: the lifetime and 10 s).
    #[arg(long)]
    timeout: Option<String>,
    #[arg(long)]
    content_type: Option<String>,
    /// actual, exercise, test or system.
    #[arg(long, default_value = "actual")]
    status: String,
    /// Do not ask for delivery reports.
    #[arg(long, conflicts_with = "wait")]
    no_receipt: bool,
    /// Send this file as an object (up to `[limits] max_object`, 256 MiB by default): its
    /// name travels with it, and `listen --save-dir` writes it out at the destination.
    #[arg(long, conflicts_with_all = ["text", "body_file", "key", "replaces"])]
    file: Option<PathBuf>,
    /// The message text from this file (a message: at most `[limits] max_payload`).
    #[arg(long, conflicts_with = "text")]
    body_file: Option<PathBuf>,
    /// The message text.
    #[arg(required_unless_present_any = ["file", "body_file"])]
    text: Option<String>,
    /// Latest-value key (e.g. pos/team-07): of this node's messages with the same key only
    /// the newest travels and is delivered.
    #[arg(long)]
    key: Option<String>,
    /// The id of a message this one replaces: the old one is dropped wherever it waits and
    /// marked superseded where it was delivered.
    #[arg(long)]
    replaces: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Debug)]
struct CancelArgs {
    /// The id of the message to recall (32 hex digits, as `send` printed it).
    id: String,
    /// Shown to the recipients with the recalled message.
    #[arg(long)]
    reason: Option<String>,
    /// Send the cancel at this precedence if higher than the message's.
    #[arg(long, short)]
    precedence: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// Only messages published to topics matching this pattern (repeatable); also subscribes.
    #[arg(long)]
    topic: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Write each object received into this directory, under the name it was sent with
    /// (checked against its SHA-256 first; a name taken gets the object's id added).
    #[arg(long)]
    save_dir: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Debug)]
struct StatusArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Debug)]
struct GroupArgs {
    /// join, leave or list.
    #[arg(value_parser = ["join", "leave", "list"])]
    action: String,
    /// The group's name (as in `group:<name>`); not for `list`.
    name: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(()) => 0,
        Err(f) if f.message.is_empty() => f.code,
        Err(f) => {
            eprintln!("relaymesh: {}", f.message);
            f.code
        }
    }
}

fn dispatch(cli: Cli) -> Outcome {
    match cli.command {
        Command::Pki { command } => pki_command(command),
        Command::Run { config } => run(&config, cli.log_format),
        Command::Check { config } => check(&config),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "relaymesh", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            cmd.build();
            match dir {
                None => clap_mangen::Man::new(cmd)
                    .render(&mut std::io::stdout())
                    .map_err(|e| Failure::runtime(format!("man page: {e}"))),
                Some(dir) => man_pages(&cmd, "", &dir),
            }
        }
        Command::Send(a) => client_runtime()?.block_on(send(a)),
        Command::Cancel(a) => client_runtime()?.block_on(cancel(a)),
        Command::Listen(a) => client_runtime()?.block_on(listen(a)),
        Command::Status(a) => client_runtime()?.block_on(status(a)),
        Command::Group(a) => client_runtime()?.block_on(group(a)),
    }
}

/// Writes the page of `cmd` (named `prefix-name`) and of each of its subcommands into `dir`.
fn man_pages(cmd: &clap::Command, prefix: &str, dir: &Path) -> Outcome {
    let name = match prefix {
        "" => cmd.get_name().to_owned(),
        p => format!("{p}-{}", cmd.get_name()),
    };
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.clone()).bin_name(name.replace('-', " ")))
        .render(&mut page)
        .map_err(|e| Failure::runtime(format!("man page {name}: {e}")))?;
    std::fs::write(&path, page)
        .map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
    out!("{}", path.display());
    for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
        man_pages(sub, &name, dir)?;
    }
    Ok(())
}

fn client_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Failure::runtime)
}

fn pki_command(c: PkiCommand) -> Outcome {
    let fail = |e: pki::PkiError| match e {
        pki::PkiError::Exists(_)
        | pki::PkiError::Pem { .. }
        | pki::PkiError::UnknownNode { .. }
        | pki::PkiError::Withdrawn { .. }
        | pki::PkiError::BadCertificate(_) => Failure::usage(e),
        pki::PkiError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::usage(e)
        }
        _ => Failure::runtime(e),
    };
    match c {
        PkiCommand::Init { dir, force, days } => {
            let path = pki::init(&dir, force, days).map_err(fail)?;
            out!("{}", path.display());
        }
        PkiCommand::Revoke { dir, node } => {
            let node = NodeId::new(&node).map_err(Failure::usage)?;
            let (path, number) = pki::revoke(&dir, &node).map_err(fail)?;
            eprintln!("revoked {node}: revocation list {number}");
            out!("{}", path.display());
        }
        PkiCommand::Decommission { dir, node } => {
            let node = NodeId::new(&node).map_err(Failure::usage)?;
            let (path, number) =
                pki::withdraw(&dir, &node, pki::Withdrawal::Decommissioned).map_err(fail)?;
            eprintln!("decommissioned {node}: revocation list {number}");
            out!("{}", path.display());
        }
        PkiCommand::Renew { dir, node, days, new_key } => {
            let node = NodeId::new(&node).map_err(Failure::usage)?;
            let validity = pki::Validity::days_from(SystemTime::now(), days);
            let path = pki::renew(&dir, &node, validity, new_key).map_err(fail)?;
            let key = if new_key { "a new key" } else { "same key" };
            eprintln!("renewed {node} for {days} days ({key})");
            out!("{}", path.display());
        }
        PkiCommand::Issue { dir, node, role, force, days } => {
            let node = NodeId::new(&node).map_err(Failure::usage)?;
            let role: Role = role.parse().map_err(Failure::usage)?;
            let validity = pki::Validity::days_from(SystemTime::now(), days);
            let path = pki::issue(&dir, &node, role, force, validity).map_err(fail)?;
            out!("{}", path.display());
        }
    }
    Ok(())
}

/// What `run` needs before it starts anything, checked as `check` reports it.
struct Prepared {
    cfg: config::RelayConfig,
    creds: shell::tls::Credentials,
    crl_path: PathBuf,
    /// The node certificate's end of validity.
    not_after: SystemTime,
    /// Things that will not stop the node but that an operator should hear of.
    warnings: Vec<String>,
    /// The API's TLS configuration (`api_tls`), loaded.
    api_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

use crate::pki::EXPIRY_WARNING;

/// Loads and checks everything `run` needs from the configuration at `config_path`: the
/// configuration itself, the certificate (this node's, issued by the CA, valid now), its key
/// and the revocation list. Every failure is bad input (exit 2) naming the file and reason.
fn prepare(config_path: &Path) -> Result<Prepared, Failure> {
    let cfg = config::load(config_path).map_err(Failure::usage)?;
    let at =
        |path: &Path, e: &dyn std::fmt::Display| Failure::usage(format!("{}: {e}", path.display()));
    let mut creds = shell::tls::Credentials::load(&cfg.ca, &cfg.cert, &cfg.key, &cfg.core.node)
        .map_err(|e| match e {
            shell::tls::TlsError::WrongIdentity { .. } => at(&cfg.cert, &e),
            e => Failure::usage(e),
        })?;
    federate(&mut creds, &cfg)
        .map_err(|(key, why)| Failure::usage(format!("{}: {key}: {why}", config_path.display())))?;
    // The role is the certificate's: every neighbour judges this node by it.
    if creds.identity.role != cfg.core.role {
        return Err(at(
            &cfg.cert,
            &format!(
                "the certificate says role {}, the configuration ({}) says {}",
                creds.identity.role,
                config_path.display(),
                cfg.core.role
            ),
        ));
    }
    check_data_dir(&cfg.data_dir).map_err(|e| at(&cfg.data_dir, &e))?;
    // Issued by the configured CA (no neighbour would take it otherwise), a key that can
    // sign, and the key the certificate's: misconfigurations that never work.
    check_issued_by(&creds.ca, &creds.chain[0]).map_err(|e| at(&cfg.cert, &e))?;
    shell::trust::pki_trust(&creds, Clock::wall()).map_err(|e| at(&cfg.key, &e))?;
    shell::tls::server_config(&creds, Clock::wall()).map_err(|e| match e {
        shell::tls::TlsError::KeyMismatch => at(&cfg.key, &format!("{e} {}", cfg.cert.display())),
        e => at(&cfg.cert, &e),
    })?;
    // Validity is warned of, not refused: a node whose certificate lapsed, or whose clock
    // is wrong, still takes, holds and delivers local traffic, and a renewed certificate is
    // taken without a restart.
    let (not_before, not_after) =
        pki::validity_of(&creds.chain[0]).map_err(|e| at(&cfg.cert, &e))?;
    let now = SystemTime::now();
    let mut warnings = Vec::new();
    let cert = cfg.cert.display();
    let ago =
        |t: SystemTime| crate::units::format_duration(now.duration_since(t).unwrap_or_default());
    match not_after.duration_since(now) {
        Err(_) => warnings.push(format!(
            "{cert}: certificate EXPIRED {} ago: no neighbour will link with this node \
             (renew: relaymesh pki renew)",
            ago(not_after)
        )),
        Ok(left) if left < EXPIRY_WARNING => warnings.push(format!(
            "{cert}: certificate expires in {} (renew: relaymesh pki renew)",
            crate::units::format_duration(left)
        )),
        Ok(_) => {}
    }
    if let Ok(early) = not_before.duration_since(now) {
        warnings.push(format!(
            "{cert}: certificate not valid for another {}: is this machine's clock right?",
            crate::units::format_duration(early)
        ));
    }
    if let Some(w) = world_readable(&cfg.key) {
        warnings.push(w);
    }
    let crl_path = cfg.crl.clone().unwrap_or_else(|| {
        cfg.ca.parent().map_or_else(|| PathBuf::from("crl.pem"), |d| d.join("crl.pem"))
    });
    if crl_path.exists() {
        // A list that is there but unusable is an operator error: say so before starting.
        let der = pki::load_crl(&crl_path).map_err(Failure::usage)?;
        check_crl_file(&creds.ca, &der).map_err(|e| at(&crl_path, &e))?;
        if pki::revoked_in(&crl_path, &creds.chain[0]).map_err(Failure::usage)? {
            warnings.push(format!(
                "{cert}: this certificate is REVOKED in {}: no neighbour will link with this \
                 node (issue it a new one)",
                crl_path.display()
            ));
        }
    }
    for (i, f) in cfg.federation.iter().enumerate() {
        let Some(path) = &f.crl else { continue };
        let key = format!("federation[{i}].crl");
        let fail = |why: &dyn std::fmt::Display| {
            Failure::usage(format!("{}: {key}: {}: {why}", config_path.display(), path.display()))
        };
        let der = pki::load_crl(path).map_err(|e| fail(&e))?;
        let ca = &creds.federated[i].ca;
        check_crl_file(ca, &der).map_err(|_| {
            fail(&format!("not signed by the CA of {} ({})", f.deployment, f.ca.display()))
        })?;
    }
    // The console's settings: a certificate or users file that cannot be read stops the start
    // before any link comes up.
    let api_tls = match &cfg.api_tls {
        Some(t) => Some(
            shell::console::tls_config(&t.cert, &t.key)
                .map_err(|e| Failure::usage(format!("api_tls_cert/api_tls_key: {e}")))?,
        ),
        None => None,
    };
    if let Some(t) = &cfg.api_tls
        && let Ok(pem) = std::fs::read(&t.cert)
        && let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_slice()).next()
        && let Ok((_, c)) = x509_parser::parse_x509_certificate(&der)
        && c.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112"
    {
        warnings.push(format!(
            "{}: an Ed25519 certificate: browsers do not accept it for TLS (use ECDSA or RSA)",
            t.cert.display()
        ));
    }
    if let Some(users) = &cfg.api_users {
        let text = std::fs::read_to_string(users).map_err(|e| at(users, &e))?;
        shell::console::parse_users(&text).map_err(|e| at(users, &e))?;
    }
    Ok(Prepared { cfg, creds, crl_path, not_after, warnings, api_tls })
}

/// Adds the CAs of the deployments `cfg` federates with to `creds`; a CA that does not load,
/// or is this deployment's own, is bad input naming the `[[federation]]` key.
fn federate(
    creds: &mut shell::tls::Credentials,
    cfg: &config::RelayConfig,
) -> Result<(), (String, String)> {
    creds.federated.clear();
    for (i, f) in cfg.federation.iter().enumerate() {
        let key = format!("federation[{i}].ca");
        let ca = pki::load_certs(&f.ca).map_err(|e| (key.clone(), e.to_string()))?.remove(0);
        if ca == creds.ca {
            return Err((key, format!("{} is this deployment's own CA (`ca`)", f.ca.display())));
        }
        if !is_ca(&ca) {
            return Err((
                key,
                format!(
                    "{} is not a CA certificate (a node's, say): give the other deployment's ca.crt",
                    f.ca.display()
                ),
            ));
        }
        if let Some(j) = creds.federated.iter().position(|g| g.ca == ca) {
            return Err((key, format!("the same CA as federation[{j}]")));
        }
        creds.federated.push(shell::tls::FederatedCa {
            deployment: f.deployment.as_str().into(),
            ca,
            nodes: f.nodes.clone(),
            border: f.border,
        });
    }
    Ok(())
}

/// Whether `cert` is a CA's: basic constraints say so and it signed itself.
fn is_ca(cert: &rustls::pki_types::CertificateDer<'_>) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, c)) = X509Certificate::from_der(cert.as_ref()) else { return false };
    let constrained = c.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca);
    constrained
        && c.issuer() == c.subject()
        && signed_by_ca(cert, c.tbs_certificate.as_ref(), &c.signature_value.data).unwrap_or(false)
}

/// Checks that the node can write its data directory (or make it): as the user, and in the
/// sandbox, it will run in (under systemd, `check` runs as the unit's `ExecStartPre`).
fn check_data_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        existing = match existing.parent() {
            // A relative path's last parent is "": the working directory.
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => return Err("no existing parent directory".into()),
        };
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".relaymesh-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("cannot write in {}: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A warning if the key file at `path` can be read by every user on the machine.
fn world_readable(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{}: the private key is readable by every user (mode {:o}); chmod 600 or 640",
            path.display(),
            mode & 0o777
        )
    })
}

/// `relaymesh check`: everything `run` checks before it starts, and what it found.
fn check(config_path: &Path) -> Outcome {
    let p = prepare(config_path)?;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    let validity = match p.not_after.duration_since(SystemTime::now()) {
        Ok(left) => format!("valid for {} more", crate::units::format_duration(left)),
        Err(_) => "EXPIRED".into(),
    };
    out!(
        "{}: node {} ({}), certificate {validity}, {} listener(s), {} peer(s), data in {}",
        config_path.display(),
        p.cfg.core.node,
        p.creds.identity.role,
        p.cfg.listen.len(),
        p.cfg.peers.len(),
        p.cfg.data_dir.display()
    );
    for (files, f) in p.cfg.federation.iter().zip(&p.cfg.core.federation) {
        let list = |v: Vec<String>| v.join(", ");
        let precedences = Precedence::DESCENDING.iter().filter(|q| f.precedences[q.index()]);
        out!(
            "federated with {}: nodes {}; {}a border (borders {}); takes {} at {} from {}",
            f.deployment,
            list(files.nodes.iter().map(|n| n.as_str().to_owned()).collect()),
            if files.border { "this node is " } else { "this node is not " },
            list(f.borders.iter().map(ToString::to_string).collect()),
            list(f.to.iter().map(ToString::to_string).collect()),
            list(precedences.map(|q| q.as_str().to_owned()).collect()),
            list(f.roles.iter().map(|(t, o)| format!("{t} (as {o})")).collect()),
        );
    }
    Ok(())
}

fn run(config_path: &Path, log_format: LogFormat) -> Outcome {
    crate::logging::init(log_format, "info", tracing_subscriber::fmt::time::SystemTime);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Failure::runtime)?;
    // SIGHUP is taken from the start (its default is to end the process): a `systemctl
    // reload` that comes while the node is still starting reloads it once it runs.
    let hangup = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    };
    let Prepared { cfg, creds, crl_path, warnings, not_after, api_tls } = prepare(config_path)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| Failure::runtime(format!("{}: {e}", cfg.data_dir.display())))?;
    rt.block_on(async move {
        let mut store = RedbStore::open(&cfg.data_dir.join("store.redb"), cfg.store_cache)
            .map_err(|e| Failure::runtime(format!("store {}: {e}", cfg.data_dir.display())))?;
        // Batches are written and synced by a thread of their own: forwarding never waits
        // for the disk, acknowledgements do.
        let landings = store
            .in_background()
            .map_err(|e| Failure::runtime(format!("store {}: {e}", cfg.data_dir.display())))?;
        let mut listeners = Vec::new();
        for l in &cfg.listen {
            let socket = shell::transport::udp_socket(l.addr)
                .map_err(|e| Failure::runtime(format!("listen {}: {e}", l.addr)))?;
            listeners.push(Listener { medium: l.medium, socket });
        }
        let dials = cfg
            .peers
            .iter()
            .map(|p| Dial { node: p.node.clone(), addr: p.addr, medium: p.medium })
            .collect();
        let seed = {
            use rand::TryRngCore;
            rand::rngs::OsRng.try_next_u64().map_err(Failure::runtime)?
        };
        let creds_ca = creds.ca.clone();
        let federated_cas: Vec<_> = creds.federated.iter().map(|f| f.ca.clone()).collect();
        let spec = RelaySpec {
            core: cfg.core.clone(),
            creds,
            transport: cfg.transport.clone(),
            listeners,
            dials,
            store: Box::new(store),
            landing: shell::driver::Landing::Reported(landings),
            clock: Clock::wall(),
            seed,
            max_batch: cfg.max_batch,
            commit: cfg.commit,
            data_dir: Some(cfg.data_dir.clone()),
            observer: None,
            dedicated_driver_thread: true,
            client_socket: Some(Box::new(|| {
                shell::transport::udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))
            })),
            stall_timeout: cfg.stall_timeout,
            traffic: Default::default(),
            compact: cfg.compact,
        };
        let relay = shell::Relay::start(spec).map_err(Failure::runtime)?;
        tokio::spawn(watch_crl(crl_path, creds_ca.clone(), relay.handle().clone()));
        for (f, ca) in cfg.federation.iter().zip(&federated_cas) {
            if let Some(path) = &f.crl {
                tokio::spawn(watch_crl(path.clone(), ca.clone(), relay.handle().clone()));
            }
        }
        for (medium, addr) in relay.local_addrs() {
            tracing::info!(%medium, %addr, "listening");
        }
        let gateways = start_gateways(&cfg, relay.handle()).await?;
        let api = shell::api::bind(cfg.api)
            .await
            .map_err(|e| Failure::runtime(format!("api {}: {e}", cfg.api)))?;
        tracing::info!(addr = %cfg.api, console = %format!("http://{}/", cfg.api), "local API");
        let access = shell::api::Access {
            token: cfg.api_token.clone(),
            users: cfg.api_users.clone(),
            session: cfg.api_session,
            max_body: shell::api::Access::body_limit(cfg.core.max_payload),
            cap: gateways.0,
            mqtt: gateways.1,
            objects: shell::objects::ObjectLimits {
                max_object: cfg.core.max_object,
                chunk_size: crate::core::objects::chunk_size_for(
                    cfg.listen.iter().map(|l| l.medium).chain(cfg.peers.iter().map(|p| p.medium)),
                ),
                spool: cfg.data_dir.join("spool"),
            },
        };
        shell::objects::clear_spool(&cfg.data_dir.join("spool"));
        let server =
            tokio::spawn(shell::api::serve(api, relay.handle().clone(), access.clone(), None));
        let tls_server = match (&cfg.api_tls, api_tls) {
            (Some(t), Some(tls)) => {
                let listener = shell::api::bind(t.addr)
                    .await
                    .map_err(|e| Failure::runtime(format!("api_tls {}: {e}", t.addr)))?;
                tracing::info!(addr = %t.addr, console = %format!("https://{}/", t.addr), "API over TLS");
                Some(tokio::spawn(shell::api::serve(
                    listener,
                    relay.handle().clone(),
                    access,
                    Some(tls),
                )))
            }
            _ => None,
        };
        tokio::select! {
            () = shutdown_signal() => {}
            () = watch_credentials(&cfg, &relay, hangup, not_after) => {}
        }
        tracing::info!("stopping");
        server.abort();
        if let Some(t) = tls_server {
            t.abort();
        }
        relay.stop().await;
        Ok(())
    })
}

/// Starts the gateways `[gateway.*]` configures: the CAP gateway (for the API) and the MQTT
/// bridge (and its counters).
async fn start_gateways(
    cfg: &shell::config::RelayConfig,
    node: &shell::driver::NodeHandle,
) -> Result<
    (
        Option<std::sync::Arc<gateway::CapGateway>>,
        Option<std::sync::Arc<gateway::mqtt::MqttStatus>>,
    ),
    Failure,
> {
    let g = &cfg.gateways;
    if g.cap.is_none() && g.mqtt.is_none() {
        return Ok((None, None));
    }
    let db = gateway::open_db(&cfg.data_dir).map_err(Failure::runtime)?;
    let cap = match &g.cap {
        Some(c) => Some(
            gateway::CapGateway::start(c.clone(), node.clone(), db.clone(), cfg.core.max_payload)
                .await
                .map_err(|e| Failure::runtime(format!("CAP gateway: {e}")))?,
        ),
        None => None,
    };
    let mqtt = g.mqtt.clone().map(|m| {
        let status = std::sync::Arc::new(gateway::mqtt::MqttStatus::default());
        tokio::spawn(gateway::mqtt::run(m, node.clone(), db.clone(), status.clone()));
        status
    });
    Ok((cap, mqtt))
}

/// Checks that the CA signed a certificate.
fn check_issued_by(
    ca: &rustls::pki_types::CertificateDer<'_>,
    cert: &rustls::pki_types::CertificateDer<'_>,
) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    signed_by_ca(ca, cert.tbs_certificate.as_ref(), &cert.signature_value.data)?
        .then_some(())
        .ok_or_else(|| "certificate not issued by the deployment CA (the `ca` file)".to_owned())
}

/// Checks a revocation list against the CA before the node starts.
fn check_crl_file(ca: &rustls::pki_types::CertificateDer<'_>, der: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| e.to_string())?;
    signed_by_ca(ca, crl.tbs_cert_list.as_ref(), &crl.signature_value.data)?
        .then_some(())
        .ok_or_else(|| "revocation list not signed by the deployment CA".to_owned())
}

/// Whether the CA's Ed25519 key signed `tbs` with `signature`.
fn signed_by_ca(
    ca: &rustls::pki_types::CertificateDer<'_>,
    tbs: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, ca) = X509Certificate::from_der(ca.as_ref()).map_err(|e| e.to_string())?;
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        ca.public_key().subject_public_key.data.as_ref(),
    );
    Ok(key.verify(tbs, signature).is_ok())
}

/// Loads the revocation list at `path` now and whenever the file changes (`relaymesh pki
/// revoke` rewrites it), and hands it to the node, which passes a newer one on to the mesh.
/// Only a list signed by `ca` is taken from this file: one deployment's list signed by another's
/// CA is refused.
async fn watch_crl(
    path: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
    node: shell::driver::NodeHandle,
) {
    let mut seen: Option<std::time::SystemTime> = None;
    loop {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != seen {
            seen = modified;
            match pki::load_crl(&path).map_err(|e| e.to_string()).and_then(|der| {
                check_crl_file(&ca, &der)
                    .map(|()| der)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }) {
                Ok(der) => match node.revocations(der).await {
                    Ok(Ok(true)) => {
                        tracing::warn!(path = %path.display(), "new revocation list loaded")
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(path = %path.display(), "revocation list refused: {e}")
                    }
                    Err(_) => return,
                },
                Err(e) => tracing::error!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Reloads the node's certificate, key and CA on SIGHUP (`systemctl reload`) and whenever one
/// of their files changes and then stays the same for 2 s (`relaymesh pki renew` rewrites
/// the certificate, and with `--new-key` the key), without
/// restarting: links stay up and custody is untouched. Credentials that do not load or
/// check are logged and the running ones kept. Warns daily while the certificate in use
/// (which ends at `not_after`) has less than [`EXPIRY_WARNING`] left, or has expired.
async fn watch_credentials(
    cfg: &config::RelayConfig,
    relay: &shell::Relay,
    mut hangup: Option<tokio::signal::unix::Signal>,
    mut not_after: SystemTime,
) {
    let files = [&cfg.ca, &cfg.cert, &cfg.key];
    let stamps = || files.map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
    let mut seen = stamps();
    // Changed files are taken once they have stayed the same for a tick: `pki renew
    // --new-key` writes the key and then the certificate, and a reload between the two would
    // find a key its certificate does not match.
    let mut settling = None;
    let mut warned: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let asked = tokio::select! {
            Some(()) = async { hangup.as_mut()?.recv().await } => true,
            _ = tick.tick() => false,
        };
        let now = stamps();
        if !asked && now == seen {
            if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(24 * 3600)) {
                match not_after.duration_since(SystemTime::now()) {
                    Err(e) => tracing::error!(
                        cert = %cfg.cert.display(),
                        "certificate EXPIRED {} ago: no neighbour will link with this node \
                         (renew: relaymesh pki renew)",
                        crate::units::format_duration(e.duration())
                    ),
                    Ok(left) if left < EXPIRY_WARNING => tracing::warn!(
                        cert = %cfg.cert.display(),
                        "certificate expires in {} (renew: relaymesh pki renew)",
                        crate::units::format_duration(left)
                    ),
                    Ok(_) => {}
                }
                warned = Some(std::time::Instant::now());
            }
            continue;
        }
        if !asked && settling.as_ref() != Some(&now) {
            settling = Some(now);
            continue;
        }
        settling = None;
        seen = now;
        let why = if asked { "SIGHUP" } else { "files changed" };
        let loaded = shell::tls::Credentials::load(&cfg.ca, &cfg.cert, &cfg.key, &cfg.core.node)
            .map_err(|e| format!("{}: {e}", cfg.cert.display()))
            .and_then(|mut c| {
                federate(&mut c, cfg).map(|()| c).map_err(|(k, why)| format!("{k}: {why}"))
            })
            .and_then(|c| match relay.reload(&c) {
                Ok(()) => Ok(c),
                Err(shell::ShellError::Tls(shell::tls::TlsError::KeyMismatch)) => Err(format!(
                    "{}: the key does not belong to the certificate {} (copying a new key and \
                     certificate? they are taken together once both are in place)",
                    cfg.key.display(),
                    cfg.cert.display()
                )),
                Err(shell::ShellError::Reload(why)) => Err(why),
                Err(e) => Err(e.to_string()),
            });
        match loaded {
            Ok(c) => {
                not_after = pki::not_after(&c.chain[0]).unwrap_or(not_after);
                let left = not_after.duration_since(SystemTime::now()).map_or_else(
                    |_| "EXPIRED".into(),
                    |d| format!("valid for {} more", crate::units::format_duration(d)),
                );
                tracing::warn!(%why, "credentials reloaded: certificate {left}");
                warned = None;
            }
            Err(e) => {
                tracing::error!(%why, "credentials not reloaded, the running ones stay: {e}");
                let _ = relay.handle().credentials_refused(e);
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A small client for the local API.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(a: &ApiArgs) -> Result<Client, Failure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(330))
            .build()
            .map_err(Failure::runtime)?;
        Ok(Client { http, base: api_base(&a.api)?, token: a.token.clone() })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Like [`Client::call`], read as one of the API's typed documents.
    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Failure> {
        let v = self.call(req).await?;
        serde_json::from_value(v)
            .map_err(|e| Failure::runtime(format!("bad answer from the node: {e}")))
    }

    /// Sends a request; maps HTTP errors to exit codes (400 is bad input, the rest runtime).
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let resp = req.send().await.map_err(|e| {
            Failure::runtime(format!("cannot reach the node at {}: {e}", self.base))
        })?;
        let code = resp.status();
        let body: Value = if code == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            resp.json()
                .await
                .map_err(|e| Failure::runtime(format!("bad answer from the node: {e}")))?
        };
        if code.is_success() {
            return Ok(body);
        }
        let reason =
            serde_json::from_value::<ErrorDoc>(body).map_or_else(|_| code.to_string(), |e| e.error);
        if code == reqwest::StatusCode::BAD_REQUEST
            || code == reqwest::StatusCode::PAYLOAD_TOO_LARGE
        {
            Err(Failure::usage(reason))
        } else {
            Err(Failure::runtime(reason))
        }
    }
}

/// "valid 824d23h more", or a warning when it is time to renew.
fn certificate_line(c: &crate::api_model::CertificateDoc) -> String {
    if c.expires_in_s < 0.0 {
        return "EXPIRED: renew it (relaymesh pki renew)".into();
    }
    let left = crate::units::format_duration(Duration::from_secs_f64(c.expires_in_s));
    if c.renew_soon {
        format!("expires in {left}: RENEW SOON (relaymesh pki renew)")
    } else {
        format!("valid {left} more")
    }
}

/// The base URL of the node's API from `--api`: `host:port` gets `http://` in front; a URL
/// must be `http://` (the local API has no TLS).
fn api_base(api: &str) -> Result<String, Failure> {
    let api = api.trim().trim_end_matches('/');
    let url = if api.contains("://") { api.to_owned() } else { format!("http://{api}") };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| Failure::usage(format!("--api {api:?}: {e} (expected host:port)")))?;
    if parsed.scheme() != "http" {
        return Err(Failure::usage(format!(
            "--api {api:?}: the local API speaks http, not {}",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none() {
        return Err(Failure::usage(format!("--api {api:?}: expected host:port")));
    }
    // No port: the API's default, not HTTP's 80.
    match parsed.port() {
        Some(_) => Ok(url),
        None => Ok(format!("{}:7480", url.trim_end_matches('/'))),
    }
}

async fn send(a: SendArgs) -> Outcome {
    crate::core::Address::parse(&a.to).map_err(Failure::usage)?;
    a.precedence.parse::<Precedence>().map_err(Failure::usage)?;
    a.status.parse::<crate::core::TrafficStatus>().map_err(Failure::usage)?;
    let lifetime =
        parse_duration(&a.lifetime).map_err(|e| Failure::usage(format!("--lifetime: {e}")))?;
    let timeout = match &a.timeout {
        Some(t) => parse_duration(t).map_err(|e| Failure::usage(format!("--timeout: {e}")))?,
        None => lifetime + Duration::from_secs(10),
    };
    if let Some(k) = &a.key {
        crate::core::types::check_key(k).map_err(|e| Failure::usage(format!("--key: {e}")))?;
    }
    if let Some(r) = &a.replaces {
        crate::core::MessageId::parse_hex(r)
            .map_err(|e| Failure::usage(format!("--replaces: {e}")))?;
    }
    let mut body = SubmitRequest {
        to: a.to.clone(),
        precedence: Some(a.precedence.clone()),
        lifetime: Some(a.lifetime.clone()),
        content_type: a.content_type.clone(),
        receipt: !a.no_receipt,
        status: Some(a.status.clone()),
        key: a.key.clone(),
        replaces: a.replaces.clone(),
        ..SubmitRequest::default()
    };
    if let Some(f) = &a.file {
        return send_object(&a, f, timeout).await;
    }
    match (&a.body_file, &a.text) {
        (Some(f), _) => {
            let bytes =
                std::fs::read(f).map_err(|e| Failure::usage(format!("{}: {e}", f.display())))?;
            match String::from_utf8(bytes) {
                Ok(text) => body.body = Some(text),
                Err(e) => {
                    use base64::Engine;
                    body.body_b64 =
                        Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()));
                }
            }
        }
        (None, Some(t)) => body.body = Some(t.clone()),
        (None, None) => return Err(Failure::usage("give the message text, --body-file or --file")),
    }
    let client = Client::new(&a.api)?;
    let answer: SubmitDoc =
        client.call_as(client.request(reqwest::Method::POST, "/v1/messages").json(&body)).await?;
    let id = answer.id;
    out!("{id}");
    let _ = std::io::stdout().flush();
    if !a.wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let wait = left.min(Duration::from_secs(60));
        let path = format!("/v1/messages/{id}?wait={}ms", wait.as_millis().max(1));
        let view: MessageDoc = client.call_as(client.request(reqwest::Method::GET, &path)).await?;
        if view.state == "no_recipients" {
            return Err(Failure::runtime(format!(
                "{id} no_recipients: {} has no member this node knows of; the message is kept \
                 until its lifetime ends and goes to any member that appears meanwhile",
                view.to
            )));
        }
        if view.settled {
            if view.state == "delivered" {
                let to = view.with_outcome("delivered");
                eprintln!(
                    "delivered to {}",
                    if to.is_empty() { "no one".into() } else { to.join(", ") }
                );
                return Ok(());
            }
            return Err(Failure::runtime(format!("{id} {}: {}", view.state, fates(&view))));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::runtime(format!(
                "{id}: no delivery report within {}",
                crate::units::format_duration(timeout)
            )));
        }
    }
}

async fn cancel(a: CancelArgs) -> Outcome {
    crate::core::MessageId::parse_hex(&a.id).map_err(Failure::usage)?;
    if let Some(p) = &a.precedence {
        p.parse::<Precedence>().map_err(Failure::usage)?;
    }
    let client = Client::new(&a.api)?;
    let body = CancelRequest { reason: a.reason.clone(), precedence: a.precedence.clone() };
    let path = format!("/v1/messages/{}/cancel", a.id);
    let answer: CancelDoc =
        client.call_as(client.request(reqwest::Method::POST, &path).json(&body)).await?;
    out!("{}", answer.id);
    match (answer.state.as_str(), &answer.overrode) {
        ("pending", _) => eprintln!(
            "{} is not known here yet: it will be dropped if it arrives here, and the cancel sent \
             on then; to recall it elsewhere now, cancel it from its origin or a node that has it",
            answer.target
        ),
        (_, Some(origin)) => {
            eprintln!("cancelling {}, sent by {origin} (override by role)", answer.target)
        }
        _ => eprintln!(
            "cancelling {}: GET /v1/messages/<the cancel's id> shows where the cancel reached",
            answer.target
        ),
    }
    Ok(())
}

fn fates(view: &MessageDoc) -> String {
    view.destinations
        .iter()
        .map(|d| {
            let reason =
                if d.reason.is_empty() { String::new() } else { format!(" ({})", d.reason) };
            format!("{} {}{reason}", d.node, d.outcome.as_deref().unwrap_or("pending"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn listen(a: ListenArgs) -> Outcome {
    let client = Client::new(&a.api)?;
    for t in &a.topic {
        crate::core::TopicPattern::new(t).map_err(Failure::usage)?;
        client
            .call(
                client
                    .request(reqwest::Method::POST, "/v1/subscriptions")
                    .json(&PatternRequest { pattern: t.clone() }),
            )
            .await?;
    }
    let topics: String = a
        .topic
        .iter()
        .map(|t| {
            format!("&topic={}", form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>())
        })
        .collect();
    let mut after: Option<u64> = None;
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let after_q = after.map(|c| format!("&after={c}")).unwrap_or_default();
        let path = format!("/v1/inbox?wait=30s&limit=1000{after_q}{topics}");
        let page: InboxDoc = client.call_as(client.request(reqwest::Method::GET, &path)).await?;
        let messages = page.messages;
        // In order, one at a time: an object is saved just before its line is printed, so
        // a failure to save it leaves it, and nothing after it, marked read.
        let mut out = stdout.lock();
        for (i, m) in messages.iter().enumerate() {
            let saved = match (&a.save_dir, &m.object) {
                (Some(dir), Some(object)) => match save_object(&client, dir, m, object).await {
                    Ok(path) => Some(path),
                    Err(e) => {
                        let _ = out.flush();
                        if a.topic.is_empty() && i > 0 {
                            mark_read(&client, messages[i - 1].cursor).await?;
                        }
                        return Err(e);
                    }
                },
                _ => None,
            };
            let line = if a.json {
                let mut v = serde_json::to_value(m).map_err(Failure::runtime)?;
                if let (Some(path), Some(o)) = (&saved, v.as_object_mut()) {
                    o.insert("saved_as".into(), path.display().to_string().into());
                }
                v.to_string()
            } else {
                text_line(m, saved.as_ref())
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // stdout closed: the reader is gone
            }
            printed += 1;
            if a.count.is_some_and(|c| printed >= c) {
                let _ = out.flush();
                if a.topic.is_empty() {
                    mark_read(&client, m.cursor).await?;
                }
                return Ok(());
            }
        }
        let _ = out.flush();
        drop(out);
        if let Some(last) = page.last {
            // Filtered listening must not mark other messages read.
            if a.topic.is_empty() && !messages.is_empty() {
                mark_read(&client, last).await?;
            }
            after = Some(last);
        }
    }
}

/// A media type for a file name's extension (the common ones in the field).
fn guess_type(path: &std::path::Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "kml" => "application/vnd.google-earth.kml+xml",
        "zip" => "application/zip",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

/// `send --file`: the file as one object, streamed to the node; with `--wait`, a progress
/// line until its receipt.
async fn send_object(a: &SendArgs, path: &std::path::Path, timeout: Duration) -> Outcome {
    use crate::api_model::{ObjectProgressDoc, ObjectSubmitDoc};
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::usage(format!("{}: not a file name", path.display())))?
        .to_owned();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let size = file.metadata().await.map_err(Failure::runtime)?.len();
    let content_type = a.content_type.clone().unwrap_or_else(|| guess_type(path).to_owned());
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("to", &a.to)
        .append_pair("precedence", &a.precedence)
        .append_pair("lifetime", &a.lifetime)
        .append_pair("status", &a.status)
        .append_pair("name", &name)
        .append_pair("receipt", if a.no_receipt { "false" } else { "true" })
        .finish();
    let client = Client::new(&a.api)?;
    let req = client
        .request(reqwest::Method::POST, &format!("/v1/objects?{query}"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::from(file));
    let doc: ObjectSubmitDoc = client.call_as(req).await?;
    let id = doc.id.clone();
    out!("{id}");
    let _ = std::io::stdout().flush();
    let kib = doc.chunk_size / 1024;
    let packed =
        if doc.zstd { format!(", {} bytes with zstd", doc.encoded_size) } else { String::new() };
    let chunks =
        if doc.chunks == 1 { "1 chunk".to_owned() } else { format!("{} chunks", doc.chunks) };
    eprintln!("{name}: {} bytes{packed}, {chunks} of {kib} KiB", doc.size);
    if !a.wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = String::new();
    loop {
        let path = format!("/v1/messages/{id}?wait=1s");
        let view: MessageDoc = client.call_as(client.request(reqwest::Method::GET, &path)).await?;
        let p: ObjectProgressDoc = client
            .call_as(client.request(reqwest::Method::GET, &format!("/v1/objects/{id}/progress")))
            .await?;
        let (n, passed) = (p.sent_chunks.unwrap_or(doc.chunks), p.passed_on.unwrap_or(0));
        let filled = (passed as usize * 30).checked_div(n as usize).unwrap_or(30);
        // This node sees its chunks leave, not arrive: past the first hop, the receipt tells.
        let then = if passed == n { ", waiting for the receipt" } else { "" };
        let line = format!(
            "[{}{}] chunks {passed}/{n} passed on{then}; {}",
            "#".repeat(filled),
            "-".repeat(30 - filled),
            view.state
        );
        if line != shown {
            eprint!("\r{line}");
            shown = line;
        }
        if view.state == "no_recipients" {
            eprintln!();
            return Err(Failure::runtime(format!(
                "{id} no_recipients: {} has no member this node knows of; the object is kept \
                 until its lifetime ends and goes to any member that appears meanwhile",
                view.to
            )));
        }
        if view.settled {
            eprintln!();
            if view.state == "delivered" {
                eprintln!("delivered to {}", view.with_outcome("delivered").join(", "));
                return Ok(());
            }
            return Err(Failure::runtime(format!("{id} {}: {}", view.state, fates(&view))));
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!();
            return Err(Failure::runtime(format!(
                "{id}: no delivery report within {}",
                crate::units::format_duration(timeout)
            )));
        }
    }
}

/// Streams object `m` into `dir` and checks it against its SHA-256 and size before giving it
/// its name (a name already taken gets the object's id added); the path written.
async fn save_object(
    client: &Client,
    dir: &std::path::Path,
    m: &InboxMessageDoc,
    object: &crate::api_model::ObjectDoc,
) -> Result<PathBuf, Failure> {
    let failed = |e: String| Failure::runtime(format!("object {} ({}): {e}", m.id, object.name));
    crate::core::objects::check_name(&object.name).map_err(failed)?;
    tokio::fs::create_dir_all(dir).await.map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let part = dir.join(format!(".{}.part", m.id));
    let resp = client
        .request(reqwest::Method::GET, &format!("/v1/objects/{}", m.id))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(failed(format!("the node answered {}", resp.status())));
    }
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| failed(format!("{}: {e}", part.display())))?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let written: Result<(), String> = async {
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| format!("reading it from the node: {e}"))?;
            size += piece.len() as u64;
            hash.update(&piece);
            file.write_all(&piece).await.map_err(|e| format!("{}: {e}", part.display()))?;
        }
        file.sync_all().await.map_err(|e| format!("{}: {e}", part.display()))?;
        let digest: String = hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if size != object.size || digest != object.sha256 {
            return Err(format!(
                "came out as {size} bytes with SHA-256 {digest}, not {} bytes with {}",
                object.size, object.sha256
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(failed(e));
    }
    let mut target = dir.join(&object.name);
    if tokio::fs::try_exists(&target).await.unwrap_or(true) {
        // photo.jpg taken: photo.1ce674ce.jpg, keeping the extension.
        let name = match object.name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{}.{ext}", &m.id[..8]),
            _ => format!("{}.{}", object.name, &m.id[..8]),
        };
        target = dir.join(name);
    }
    tokio::fs::rename(&part, &target)
        .await
        .map_err(|e| failed(format!("{}: {e}", target.display())))?;
    Ok(target)
}

async fn group(a: GroupArgs) -> Outcome {
    let client = Client::new(&a.api)?;
    let method = match (a.action.as_str(), &a.name) {
        ("list", None) => {
            let v: GroupsDoc =
                client.call_as(client.request(reqwest::Method::GET, "/v1/groups")).await?;
            if v.groups.is_empty() {
                eprintln!("no named groups (besides group:all and its role's group)");
            }
            for g in v.groups {
                out!("{g}");
            }
            return Ok(());
        }
        ("list", Some(_)) => return Err(Failure::usage("`group list` takes no name")),
        (_, None) => return Err(Failure::usage(format!("`group {}` needs a name", a.action))),
        ("join", Some(_)) => reqwest::Method::POST,
        _ => reqwest::Method::DELETE,
    };
    let body = GroupRequest { group: a.name.clone().unwrap_or_default() };
    let v: GroupChangeDoc =
        client.call_as(client.request(method, "/v1/groups").json(&body)).await?;
    let done = if a.action == "join" { "joined" } else { "left" };
    let name = v.group;
    match (v.changed, a.action.as_str()) {
        (true, _) => eprintln!("{done} group:{name}"),
        (false, "join") => eprintln!("already a member of group:{name}"),
        (false, _) => eprintln!("not a member of group:{name}: nothing to leave"),
    }
    Ok(())
}

async fn mark_read(client: &Client, cursor: u64) -> Outcome {
    client
        .call(client.request(reqwest::Method::POST, "/v1/inbox/read").json(&ReadRequest { cursor }))
        .await
        .map(|_| ())
}

fn text_line(m: &InboxMessageDoc, saved: Option<&PathBuf>) -> String {
    let body = match (&m.object, saved) {
        (Some(o), Some(path)) => {
            format!(
                "object {} ({} bytes of {}) saved as {}",
                o.name,
                o.size,
                o.content_type,
                path.display()
            )
        }
        (Some(o), None) => format!(
            "object {} ({} bytes of {}): GET /v1/objects/{}",
            o.name, o.size, o.content_type, m.id
        ),
        _ => m.body.clone().unwrap_or_else(|| {
            format!(
                "<{} bytes of {}>",
                m.body_b64.as_ref().map_or(0, |b| b.len() * 3 / 4),
                m.content_type
            )
        }),
    };
    let status = match m.status.as_str() {
        "actual" => String::new(),
        s => format!(" [{}]", s.to_uppercase()),
    };
    let mut notes = String::new();
    if let Some(r) = &m.replaces {
        notes.push_str(&format!(" [replaces {r}]"));
    }
    if let Some(w) = &m.withdrawn {
        let reason = if w.reason.is_empty() { String::new() } else { format!(": {}", w.reason) };
        notes.push_str(&format!(" [{} by {}{reason}]", w.outcome.to_uppercase(), w.by));
    }
    format!(
        "{} {} -> {} ({:.0} ms){status}{notes}: {body}",
        m.precedence.to_uppercase(),
        m.origin,
        m.to,
        m.age_ms,
    )
}

async fn status(a: StatusArgs) -> Outcome {
    let client = Client::new(&a.api)?;
    let s: StatusDoc = client.call_as(client.request(reqwest::Method::GET, "/v1/status")).await?;
    if a.json {
        out!("{}", serde_json::to_string_pretty(&s).map_err(Failure::runtime)?);
        return Ok(());
    }
    out!("{} ({}), up {:.0} s", s.node, s.role, s.uptime_s);
    if let Some(c) = &s.certificate {
        match c.serial.as_str() {
            "" => out!("certificate: {}", certificate_line(c)),
            serial => out!("certificate: {} (serial {serial})", certificate_line(c)),
        }
        if let Some(why) = &c.reload_error {
            out!("credentials: new ones REFUSED, the running ones stay: {why}");
        }
    }
    out!("\nlinks:");
    for l in &s.links {
        out!(
            "  {:<20} {:<9} {:<4} rtt {:>8} loss {:>5.1}%  in flight {:>4}  {}",
            l.peer,
            l.medium,
            if l.up { "up" } else { "down" },
            l.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
            l.loss * 100.0,
            l.inflight,
            l.addr.as_deref().unwrap_or(""),
        );
        if let Some(c) = l.certificate.as_ref().filter(|c| c.renew_soon) {
            out!("    certificate: {}", certificate_line(c));
        }
        for (way, d) in [("sent", &l.bytes.sent), ("received", &l.bytes.received)] {
            if d.udp_bytes == 0 {
                continue;
            }
            out!(
                "    {way:<8} {:>9} offers, payload {} of {} on the wire ({:.1}%), framing {} per offer, control {}",
                d.offers,
                format_bytes(d.payload),
                format_bytes(d.udp_bytes),
                d.payload as f64 * 100.0 / d.udp_bytes as f64,
                d.framing_per_offer().map_or("-".into(), |b| format!("{b:.0} B")),
                format_bytes(d.control_bytes),
            );
        }
    }
    out!("\nroutes (flash / routine next hop):");
    let hop = |dest: &str, p: Precedence| {
        s.routes
            .iter()
            .find(|r| r.destination == dest && r.precedence == p.as_str())
            .map_or("-", |r| r.next_hop.as_str())
    };
    let mut dests: Vec<&str> = s.routes.iter().map(|r| r.destination.as_str()).collect();
    dests.sort();
    dests.dedup();
    for d in &dests {
        out!("  {:<20} {:<20} {}", d, hop(d, Precedence::Flash), hop(d, Precedence::Routine));
    }
    // Members without a route: what is sent to their groups and topics waits for them.
    let away: Vec<&str> =
        s.members.iter().map(String::as_str).filter(|m| !dests.contains(m)).collect();
    out!(
        "\nmembers: {} known, {} without a route{}{}",
        s.members.len(),
        away.len(),
        if away.is_empty() { "" } else { ": " },
        away.join(", ")
    );
    if !s.groups.is_empty() {
        out!("groups of this node: {}", s.groups.join(", "));
    }
    if s.capacity_bytes <= s.held_bytes {
        out!(
            "\nSTORE FULL: {} held of {} it may hold now ([store] max_bytes, or the disk's free \
             space less 16 MiB): offers and submissions are refused; neighbours keep what they offer",
            format_bytes(s.held_bytes),
            format_bytes(s.capacity_bytes)
        );
    }
    out!("\nheld:");
    for (p, c) in s.counters.iter() {
        out!(
            "  {:<9} held {:>7}  submitted {:>7}  delivered {:>7}  forwarded {:>7}  expired {:>5}  refused {:>5}  no recipients {:>5}",
            p.as_str(),
            s.queues.get(p),
            c.submitted,
            c.delivered,
            c.forwarded,
            c.expired,
            c.refused,
            c.no_recipients,
        );
    }
    let steered: Vec<String> = s
        .counters
        .iter()
        .filter(|(_, c)| c.cancelled + c.superseded > 0)
        .map(|(p, c)| {
            format!("{} {} cancelled, {} superseded", p.as_str(), c.cancelled, c.superseded)
        })
        .collect();
    if !steered.is_empty() {
        out!("dropped here for a cancel or a newer message: {}", steered.join("; "));
    }
    let escalated: Vec<String> = s
        .counters
        .iter()
        .filter(|(_, c)| c.escalated > 0)
        .map(|(p, c)| format!("{} {}", c.escalated, p.as_str()))
        .collect();
    if !escalated.is_empty() {
        out!("late, sent on routes their precedence avoids: {}", escalated.join(", "));
    }
    let late: Vec<String> = s
        .overdue
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| format!("{n} {}", p.as_str().to_uppercase()))
        .collect();
    if !late.is_empty() {
        out!(
            "\nOVERDUE: {} destinations past their delivery objective (GET /v1/overdue lists them)",
            late.join(", ")
        );
    }
    let objects: crate::api_model::ObjectsDoc =
        client.call_as(client.request(reqwest::Method::GET, "/v1/objects")).await?;
    if !objects.objects.is_empty() {
        out!("\nobjects on their way:");
        for o in &objects.objects {
            let name = o.object.as_ref().map_or("?", |d| d.name.as_str());
            out!("  {} {name}: {}", &o.id[..8], o.summary);
        }
    }
    if !s.deployments.is_empty() {
        let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (node, d) in &s.deployments {
            by.entry(d.as_str()).or_default().push(node.as_str());
        }
        out!("\nother deployments (federated):");
        for (d, nodes) in by {
            let crl = s.security.federated_revocation_lists.get(d);
            let crl = crl.map_or(String::new(), |n| format!(" (revocation list {n})"));
            out!("  {d}{crl}: {}", nodes.join(", "));
        }
    }
    if s.security.federation_refused > 0 {
        out!(
            "refused by a federation's policy: {} messages from other deployments' nodes",
            s.security.federation_refused
        );
    }
    if !s.refused_links.is_empty() {
        out!("\nrefused links:");
        for r in s.refused_links.iter().rev().take(10) {
            out!("  {} {} {}: {}", r.addr, r.medium, r.peer.as_deref().unwrap_or("?"), r.reason);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::api_base;

    #[test]
    fn api_addresses_take_host_port_urls_and_default_to_the_api_port() {
        let ok = |s: &str| api_base(s).unwrap_or_else(|e| panic!("{s}: {}", e.message));
        assert_eq!(ok("127.0.0.1:7481"), "http://127.0.0.1:7481");
        assert_eq!(ok("http://127.0.0.1:7481/"), "http://127.0.0.1:7481");
        assert_eq!(ok("127.0.0.1"), "http://127.0.0.1:7480");
        assert_eq!(ok("http://localhost"), "http://localhost:7480");
        assert_eq!(ok("[::1]:9000"), "http://[::1]:9000");
        for bad in ["https://127.0.0.1:7480", "127.0.0.1:notaport", "ftp://x:1", ""] {
            assert_eq!(api_base(bad).map_err(|e| e.code), Err(2), "{bad}");
        }
    }
}
