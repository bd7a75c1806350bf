//! Field deployment, end to end with real processes: credentials renewed and reloaded while
//! a node runs, and the command line an operator meets first (check, renew, durations,
//! `--api host:port`, JSON logs, completions, the man page), and two deployments federated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Sends a FLASH from `from` to `to` and waits until it is delivered.
fn delivered(from: &Relay, to: &str, body: &str) {
    let id = from.submit(&format!("node:{to}"), "flash", body).unwrap();
    let view = from.message(&id, "20s");
    assert_eq!(view.state, "delivered", "{body}: {view:?}");
}

/// Runs `relaymesh VERB --config CONFIG`, insists on exit 2, and returns what it said.
fn refused(verb: &str, config: &std::path::Path) -> String {
    let out = cli(&[verb, "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{verb}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The number of log lines of `relay` that contain `what`.
fn lines(relay: &Relay, what: &str) -> usize {
    relay.log().lines().filter(|l| l.contains(what)).count()
}

#[test]
fn credentials_reload_on_sighup_and_on_renewal_with_links_kept_and_bad_ones_are_refused() {
    let mesh = Mesh::new();
    let (hq, mut t1) = mesh.linked_pair("");
    let link = |r: &Relay| r.links().into_iter().find(|l| l.peer == "county-hq" && l.up).unwrap();
    let before = link(&t1);

    // SIGHUP with nothing changed: reloaded, nothing else happens.
    t1.hangup();
    wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        (lines(&t1, "credentials reloaded") == 1).then_some(())
    });
    assert!(t1.log().contains("SIGHUP"), "{}", t1.log());

    // `pki renew` rewrites the certificate: the node sees the file change and takes it.
    let pki = mesh.pki();
    let crt = pki.join("township-01.crt");
    let old = std::fs::read(&crt).unwrap();
    cli_ok(&["pki", "renew", "--dir", pki.to_str().unwrap(), "--node", "township-01"]);
    assert_ne!(std::fs::read(&crt).unwrap(), old);
    wait_for("the renewal reload", Duration::from_secs(20), || {
        (lines(&t1, "credentials reloaded") == 2).then_some(())
    });
    t1.assert_running();
    let after = link(&t1);
    assert_eq!(after.id, before.id, "the link was kept through both reloads");
    delivered(&hq, "township-01", "after the renewal");
    delivered(&t1, "county-hq", "signed under the renewed certificate");

    // A certificate from another deployment's CA, for the same node id: refused, logged, and
    // the node runs on with the one it has.
    let other = Mesh::new();
    other.issue("township-01", "township");
    std::fs::copy(other.pki().join("township-01.crt"), &crt).unwrap();
    wait_for("the refusal", Duration::from_secs(20), || {
        (lines(&t1, "credentials not reloaded") == 1).then_some(())
    });
    t1.assert_running();
    assert_eq!(lines(&t1, "credentials reloaded"), 2);
    assert_eq!(link(&t1).id, before.id);
    delivered(&hq, "township-01", "after the refused reload");
    // Reported, not only logged: in `status` and `/metrics` until a reload works.
    let serial = |r: &Relay| r.status().certificate.unwrap().serial;
    let refused = t1.status().certificate.unwrap();
    assert!(refused.reload_error.is_some(), "{refused:?}");
    let metrics = |r: &Relay| {
        http().get(format!("{}/metrics", r.spec.api_url())).send().unwrap().text().unwrap()
    };
    assert!(metrics(&t1).contains("relaymesh_credentials_reload_failed 1"));
    let serial_before = serial(&t1);
    assert!(!serial_before.is_empty());

    // The renewed certificate is what new links use: put it back, restart the hub, and the
    // township links again (it redials with the renewed certificate and its key).
    cli_ok(&["pki", "renew", "--dir", pki.to_str().unwrap(), "--node", "township-01"]);
    wait_for("the third reload", Duration::from_secs(20), || {
        (lines(&t1, "credentials reloaded") == 3).then_some(())
    });
    wait_for("the error cleared", Duration::from_secs(20), || {
        t1.status().certificate.unwrap().reload_error.is_none().then_some(())
    });
    assert!(metrics(&t1).contains("relaymesh_credentials_reload_failed 0"));
    assert_ne!(serial(&t1), serial_before, "status shows the certificate in use");
    let mut hq = hq;
    hq.restart();
    t1.wait_link("county-hq");
    hq.wait_link("township-01");
    delivered(&hq, "township-01", "over a link made with the renewed certificate");

    // A key that is not the certificate's (another node's): refused, and said so plainly.
    std::fs::copy(pki.join("county-hq.key"), pki.join("township-01.key")).unwrap();
    wait_for("the key refusal", Duration::from_secs(20), || {
        (lines(&t1, "credentials not reloaded") == 2).then_some(())
    });
    let why = t1.status().certificate.unwrap().reload_error.unwrap();
    assert!(why.contains("township-01.key: the key does not belong to the certificate"), "{why}");
    t1.assert_running();
}

#[test]
fn a_new_key_under_load_with_messages_held_downstream_loses_nothing_and_cuts_nobody_off() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public");
    let hill = mesh.node("relay-hill", "relay", "public").peer(&hq);
    // The township's radio link to the relay, which can be cut.
    let radio = UdpProxy::start(hill.port);
    let town =
        mesh.node("township-01", "township", "public").peer_at("relay-hill", radio.port, "public");
    let (hq, mut hill, mut town) = (hq.start(), hill.start(), town.start());
    hill.wait_link("county-hq");
    town.wait_link("relay-hill");
    delivered(&hq, "township-01", "the township knows the county's first key");

    // The radio link fails; before the relay notices, the county's messages reach it, and it
    // holds them for the township.
    radio.cut();
    let send = |label: &str, n: usize| -> Vec<String> {
        let to = "node:township-01";
        (0..n).map(|i| hq.submit(to, "routine", &format!("{label} {i}")).unwrap()).collect()
    };
    let held = send("signed with the first key", 40);
    for id in &held {
        wait_for("custody at the relay", Duration::from_secs(30), || {
            let view = hq.message(id, "0s");
            (view.custody_at.as_deref() == Some("relay-hill")).then_some(())
        });
    }
    // The county is given a new key while it sends: `pki renew --new-key` rewrites its key
    // and certificate; the running node takes both and goes on.
    let pki = mesh.pki();
    let key = pki.join("county-hq.key");
    let old_key = std::fs::read(&key).unwrap();
    cli_ok(&["pki", "renew", "--dir", pki.to_str().unwrap(), "--node", "county-hq", "--new-key"]);
    assert_ne!(std::fs::read(&key).unwrap(), old_key);
    let mut ids = held.clone();
    wait_for("the new key", Duration::from_secs(20), || {
        ids.extend(send("around the change", 3));
        (lines(&hq, "credentials reloaded") >= 1).then_some(())
    });
    assert!(lines(&hq, "signs with a new key") >= 1, "{}", hq.log());
    ids.extend(send("signed with the new key", 40));

    // The link comes back: everything arrives, once, and nobody was taken for a forger.
    radio.heal();
    for id in &ids {
        let view = hq.message(id, "60s");
        assert_eq!(view.state, "delivered", "{view:?}");
    }
    let inbox = town.inbox_all();
    let got: std::collections::BTreeSet<&str> = inbox.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(inbox.len(), ids.len() + 1, "each message delivered once");
    assert!(ids.iter().all(|id| got.contains(id.as_str())));
    for r in [&hill, &town] {
        let s = r.status();
        assert_eq!(s.security.forged, 0, "{} refused a good signature", r.spec.id);
        assert!(s.bad_frames.iter().all(|b| !b.reason.contains("cut off")), "{:?}", s.bad_frames);
    }
    town.wait_link("relay-hill");
    delivered(&hq, "township-01", "and nobody was cut off");
    hill.wait_link("county-hq");
}

#[test]
fn check_takes_a_config_named_from_its_own_directory_as_the_quick_start_does() {
    // `relaymesh check --config county-hq.toml` in the directory that holds it, with a
    // relative `data_dir` that does not exist yet: its last parent is the working directory.
    let mesh = Mesh::new();
    let config = mesh.node("county-hq", "command", "public").write_config();
    let out = Command::new(&*BIN)
        .current_dir(config.parent().unwrap())
        .args(["check", "--config"])
        .arg(config.file_name().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_validates_what_run_would_and_names_the_file_and_reason() {
    let mesh = Mesh::new();
    let node = mesh.node("county-hq", "command", "public");
    let config = node.write_config();
    let config = config.to_str().unwrap();

    let out = cli(&["check", "--config", config]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("node county-hq (command)"), "{said}");
    assert!(said.contains("certificate valid for"), "{said}");

    // A world-readable key: warned, not refused.
    let key = mesh.pki().join("county-hq.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli(&["check", "--config", config]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by every user") && err.contains("county-hq.key"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A certificate from another CA: exit 2 naming the certificate file and the reason, and
    // `run` says the same.
    let other = Mesh::new();
    other.issue("county-hq", "command");
    let crt = mesh.pki().join("county-hq.crt");
    let ours = std::fs::read(&crt).unwrap();
    std::fs::copy(other.pki().join("county-hq.crt"), &crt).unwrap();
    for verb in ["check", "run"] {
        let err = refused(verb, config.as_ref());
        assert!(err.contains("county-hq.crt") && err.contains("deployment CA"), "{verb}: {err}");
    }
    // Its key does not go with our certificate: exit 2 naming the certificate.
    std::fs::write(&crt, &ours).unwrap();
    std::fs::copy(other.pki().join("county-hq.key"), &key).unwrap();
    let err = refused("check", config.as_ref());
    assert!(err.contains("county-hq.crt") && err.contains("does not belong"), "{err}");
}

#[test]
fn renewing_a_revoked_node_exits_2_and_an_unknown_one_too() {
    let mesh = Mesh::new();
    mesh.issue("team-rescue-7", "field");
    let dir = mesh.pki();
    let dir = dir.to_str().unwrap();
    cli_ok(&["pki", "renew", "--dir", dir, "--node", "team-rescue-7", "--days", "30"]);
    cli_ok(&["pki", "revoke", "--dir", dir, "--node", "team-rescue-7"]);
    let out = cli(&["pki", "renew", "--dir", dir, "--node", "team-rescue-7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    let out = cli(&["pki", "renew", "--dir", dir, "--node", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_cli_takes_host_port_compound_durations_and_logs_json() {
    let mesh = Mesh::new();
    let node = mesh.node("county-hq", "command", "public");
    let config = node.write_config();
    let log = std::fs::File::create(mesh.dir.path().join("json.log")).unwrap();
    let mut child = Command::new(&*BIN)
        .args(["--log-format", "json", "run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let api = format!("127.0.0.1:{}", node.api);
    wait_for("the API", Duration::from_secs(20), || {
        cli(&["status", "--api", &api]).status.success().then_some(())
    });
    // --api host:port (no http://) and a compound lifetime.
    let out = cli(&["send", "--api", &api, "--to", "node:county-hq", "--lifetime", "2h30m", "hi"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = cli(&["send", "--api", &api, "--to", "node:county-hq", "--lifetime", "1h 15m", "x"]);
    assert!(out.status.success());
    let out = cli(&["send", "--api", &api, "--to", "node:county-hq", "--lifetime", "2h30", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lifetime"));
    let out = cli(&["send", "--api", "https://127.0.0.1:1", "--to", "node:x", "y"]);
    assert_eq!(out.status.code(), Some(2));
    let got = cli_ok(&["listen", "--api", &api, "--json", "--count", "1"]);
    assert!(got.contains(&id), "{got}");

    // Every log line is a JSON object with a level and a message.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let text = std::fs::read_to_string(mesh.dir.path().join("json.log")).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
        seen += 1;
    }
    assert!(seen >= 2, "{text}");
    assert!(text.contains("local API"), "{text}");
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_cli() {
    let bash = cli_ok(&["completions", "bash"]);
    assert!(bash.contains("complete") && bash.contains("renew") && bash.contains("check"));
    let zsh = cli_ok(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef relaymesh"));
    let man = cli_ok(&["man"]);
    assert!(man.contains(".TH relaymesh 1") && man.contains("completions"), "{man}");
    let out = cli(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn certificate_expiry_shows_in_status_metrics_and_logs_and_a_short_one_is_warned_of() {
    let mesh = Mesh::new();
    let pki = mesh.pki();
    let dir = pki.to_str().unwrap();
    // township-01's certificate has 10 days left; county-hq's the default 825.
    cli_ok(&["pki", "init", "--dir", dir, "--force"]);
    let short = ["pki", "issue", "--dir", dir, "--node", "township-01", "--role", "township"];
    cli_ok(&[&short[..], &["--days", "10"]].concat());
    let (hq, t1) = mesh.linked_pair("");
    let day = 86_400.0;

    let own = t1.status().certificate.expect("own certificate in status");
    assert!(own.renew_soon && own.expires_in_s > 9.9 * day && own.expires_in_s <= 10.0 * day);
    let hq_status = hq.status();
    let own = hq_status.certificate.expect("own certificate in status");
    assert!(!own.renew_soon && own.expires_in_s > 824.0 * day, "{own:?}");
    let link = hq_status.links.iter().find(|l| l.peer == "township-01" && l.up).unwrap();
    let peer = link.certificate.as_ref().expect("the neighbour's certificate");
    assert!(peer.renew_soon && peer.expires_in_s <= 10.0 * day, "{peer:?}");

    // The log: the township warns of its own at start, the county of its neighbour's.
    assert!(t1.log().contains("certificate expires in"), "{}", t1.log());
    wait_for("the county's warning", Duration::from_secs(10), || {
        hq.log().contains("the neighbour's certificate expires in").then_some(())
    });
    // The text status says so; check warns.
    let text = cli_ok(&["status", "--api", &hq.spec.api_url()]);
    assert!(text.contains("RENEW SOON"), "{text}");
    let out = cli(&["check", "--config", t1.spec.config_path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate expires in"));

    // Metrics: seconds left, own and per neighbour.
    let metrics = http().get(format!("{}/metrics", hq.spec.api_url())).send().unwrap();
    let metrics = metrics.text().unwrap();
    let value = |prefix: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(prefix)).expect(prefix);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("relaymesh_certificate_expiry_seconds ") > 824.0 * day);
    let peer = value("relaymesh_peer_certificate_expiry_seconds{peer=\"township-01\"");
    assert!(peer > 9.9 * day && peer <= 10.0 * day, "{metrics}");

    // The township renews: the county learns the new certificate from its advert, on the
    // link it already has, and stops warning.
    cli_ok(&["pki", "renew", "--dir", dir, "--node", "township-01"]);
    wait_for("the renewed neighbour", Duration::from_secs(30), || {
        let s = hq.status();
        let link = s.links.iter().find(|l| l.peer == "township-01" && l.up)?;
        let peer = link.certificate.as_ref()?;
        (!peer.renew_soon && peer.expires_in_s > 824.0 * day).then_some(())
    });
}

#[test]
fn check_refuses_a_role_the_certificate_does_not_give_and_a_data_dir_it_cannot_write() {
    let mesh = Mesh::new();
    // The certificate says township; the configuration says command.
    mesh.issue("township-01", "township");
    let node = mesh.node("township-01", "command", "public");
    let config = node.write_config();
    let err = refused("check", &config);
    assert!(err.contains("township-01.crt") && err.contains("role township"), "{err}");
    refused("run", &config);

    // A data directory nobody can write (as under systemd's ProtectSystem=strict).
    let node = mesh.node("township-01", "township", "public");
    let config = node.write_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("data_dir = \"data/township-01\"", "data_dir = \"/proc/relaymesh\"");
    assert!(text.contains("/proc/relaymesh"), "{text}");
    std::fs::write(&config, text).unwrap();
    let err = refused("check", &config);
    assert!(err.contains("/proc/relaymesh") && err.contains("cannot write"), "{err}");
}

#[test]
fn check_warns_of_a_revoked_certificate_and_revoking_covers_the_one_a_renewal_replaced() {
    let mesh = Mesh::new();
    let node = mesh.node("team-rescue-7", "field", "public");
    let config = node.write_config();
    let dir = mesh.pki();
    let dir = dir.to_str().unwrap();
    let crt = mesh.pki().join("team-rescue-7.crt");
    let before = std::fs::read(&crt).unwrap();
    cli_ok(&["pki", "renew", "--dir", dir, "--node", "team-rescue-7"]);
    cli_ok(&["pki", "revoke", "--dir", dir, "--node", "team-rescue-7"]);
    let out = cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REVOKED"));
    // The certificate from before the renewal (same key) is revoked as well.
    std::fs::write(&crt, &before).unwrap();
    let out = cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("REVOKED"), "the replaced certificate");
}

#[test]
fn listen_into_a_closed_pipe_ends_quietly() {
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "public").start();
    hq.submit("node:county-hq", "routine", "first").unwrap();
    let mut child = Command::new(&*BIN)
        .args(["listen", "--api", &hq.spec.api_url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout); // the reader goes away, as `| head -1` does
    // The next message cannot be written: listen ends, with no panic.
    hq.submit("node:county-hq", "routine", "second").unwrap();
    let out = wait_for("listen to end", Duration::from_secs(20), || child.try_wait().unwrap());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(out.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `[[federation]]` at `to`'s end: `deployment` under `other`'s CA, whose nodes are `nodes`,
/// with `borders` and the policy lines given.
fn federation(other: &Mesh, deployment: &str, nodes: &str, borders: &str, policy: &str) -> String {
    format!(
        "[[federation]]\ndeployment = \"{deployment}\"\nca = \"{}/ca.crt\"\nnodes = {nodes}\n\
         borders = {borders}\n{policy}\n",
        other.pki().display()
    )
}

/// The county (county-hq, its border) and the city (city-hq, its border, which dials
/// county-hq over satellite), each under its own CA.
fn two_deployments() -> (Mesh, Mesh, Relay, Relay) {
    let county = Mesh::new();
    let city = Mesh::new();
    let hq = county.node("county-hq", "command", "satellite").extra(&federation(
        &city,
        "city",
        r#"["city-*"]"#,
        r#"["county-hq"]"#,
        "to = [\"node:*\"]\nprecedences = [\"immediate\", \"priority\", \"routine\"]\n\
         roles = { command = \"township\" }",
    ));
    let chq = city.node("city-hq", "command", "public").extra(&format!(
        "[[peer]]\nnode = \"county-hq\"\naddr = \"127.0.0.1:{}\"\nmedium = \"satellite\"\n\
         deployment = \"county\"\n\n{}",
        hq.port,
        federation(
            &county,
            "county",
            r#"["county-*", "township-*"]"#,
            r#"["city-hq"]"#,
            "to = [\"node:*\"]\nroles = { command = \"command\", township = \"township\" }",
        )
    ));
    let mut hq = hq.start();
    let mut chq = chq.start();
    hq.wait_link("city-hq");
    chq.wait_link("county-hq");
    (county, city, hq, chq)
}

#[test]
fn two_deployments_under_different_cas_exchange_orders_under_their_federation_policy() {
    let (_county, _city, hq, chq) = two_deployments();
    // Both ways, what each policy allows arrives, with its receipt.
    let id = chq.submit("node:county-hq", "immediate", "city: open the shelter").unwrap();
    let view = chq.message(&id, "20s");
    assert_eq!(view.state, "delivered", "{view:?}");
    delivered(&hq, "city-hq", "county: bridge 4 is down");
    // FLASH from the city is not in the county's policy: refused with the reason, counted,
    // and the city's border stays linked (an honest message, simply not allowed).
    let id = chq.submit("node:county-hq", "flash", "city: evacuate").unwrap();
    let view = chq.message(&id, "20s");
    assert_eq!(view.state, "refused", "{view:?}");
    let reason = &view.destinations[0].reason;
    assert!(reason.contains("flash may not cross from city"), "{reason}");
    let status = hq.status();
    assert_eq!(status.security.federation_refused, 1);
    assert_eq!(status.security.forged, 0);
    assert_eq!(status.deployments.get("city-hq").map(String::as_str), Some("city"));
    assert!(status.links.iter().any(|l| l.peer == "city-hq" && l.up), "{:?}", status.links);
    assert_eq!(chq.status().deployments.get("county-hq").map(String::as_str), Some("county"));
    assert!(hq.log().contains("flash may not cross from city"), "the refusal is logged");
    let inbox: Vec<String> = hq.inbox_all().into_iter().filter_map(|m| m.body).collect();
    assert_eq!(inbox, ["city: open the shelter"]);
    // The operator's view says the same; `check` says what the configuration federates.
    let checked = cli_ok(&["check", "--config", hq.spec.config_path().to_str().unwrap()]);
    assert!(
        checked.contains(
            "federated with city: nodes city-*; this node is a border (borders county-hq); \
             takes node:* at immediate, priority, routine from command (as township)"
        ),
        "{checked}"
    );
    let shown = cli_ok(&["status", "--api", &hq.spec.api_url()]);
    assert!(shown.contains("other deployments (federated):\n  city: city-hq"), "{shown}");
    assert!(shown.contains("refused by a federation's policy: 1 messages"), "{shown}");
}

#[test]
fn a_node_of_a_federated_deployment_is_refused_away_from_its_borders() {
    let county = Mesh::new();
    let city = Mesh::new();
    // township-01 trusts the city's signatures but is not a border: its handshake does not
    // take the city's certificates.
    let fed = federation(
        &city,
        "city",
        r#"["city-*"]"#,
        r#"["county-hq"]"#,
        "to = [\"*\"]\nroles = { command = \"township\" }",
    );
    let t1 = county.node("township-01", "township", "public").extra(&fed);
    let chq = city.node("city-hq", "command", "public").peer_at("township-01", t1.port, "public");
    let t1 = t1.start();
    let _chq = chq.start();
    let refusal = wait_for("the refusal", Duration::from_secs(20), || {
        t1.status().refused_links.first().cloned()
    });
    assert!(
        refusal.reason.contains("UnknownIssuer") || refusal.reason.contains("certificate"),
        "{}",
        refusal.reason
    );
    assert!(t1.status().links.is_empty());
}

#[test]
fn federation_configurations_that_cannot_work_exit_2_naming_the_key() {
    let county = Mesh::new();
    let city = Mesh::new();
    let policy = "to = [\"node:*\"]\nroles = { command = \"township\" }";
    // `relaymesh check` of county node `node` with `extra`: exit 2, and what it said.
    let check = |node: &str, extra: &str| {
        refused("check", &county.node(node, "command", "public").extra(extra).write_config())
    };
    let city_fed = |borders: &str| federation(&city, "city", r#"["city-*"]"#, borders, policy);
    let expect = |said: String, key: &str, why: &str| {
        assert!(said.contains(key) && said.contains(why), "{key}: {said}");
    };
    // This deployment's own CA named as another's.
    let own = federation(&county, "city", r#"["city-*"]"#, r#"["county-hq"]"#, policy);
    expect(check("county-hq", &own), "federation[0].ca", "this deployment's own CA");
    // A peer of the other deployment dialled from a node that is not one of its borders.
    let peer = "[[peer]]\nnode = \"city-hq\"\naddr = \"127.0.0.1:9\"\nmedium = \"public\"\n\
                deployment = \"city\"";
    let fed = city_fed(r#"["county-hq"]"#) + peer;
    expect(check("county-5", &fed), "peer[0].deployment", "not a border of city");
    // A border that is one of the other deployment's nodes.
    expect(check("county-2", &city_fed(r#"["city-hq"]"#)), "federation[0].borders[0]", "");
    // A node's certificate where the other deployment's CA belongs, and a policy that would
    // let nothing across.
    city.issue("city-hq", "command");
    let fed = city_fed(r#"["county-hq"]"#).replace("/ca.crt", "/city-hq.crt");
    expect(check("county-3", &fed), "federation[0].ca", "not a CA certificate");
    let none = city_fed(r#"["county-hq"]"#) + "precedences = []\n";
    expect(check("county-4", &none), "federation[0].precedences", "");
    // The city's revocation list signed by the county's CA.
    cli_ok(&["pki", "revoke", "--dir", county.pki().to_str().unwrap(), "--node", "county-2"]);
    let crl = county.pki().join("crl.pem");
    let fed = city_fed(r#"["county-hq"]"#) + &format!("crl = \"{}\"\n", crl.display());
    expect(check("county-hq", &fed), "federation[0].crl", "not signed by the CA of city");
}

#[test]
fn a_federated_revocation_list_replaced_by_one_another_ca_signed_is_refused_while_running() {
    let county = Mesh::new();
    let city = Mesh::new();
    city.issue("city-x", "command");
    cli_ok(&["pki", "revoke", "--dir", city.pki().to_str().unwrap(), "--node", "city-x"]);
    // The node watches its own copy of the city's list.
    let theirs = county.dir.path().join("city-crl.pem");
    std::fs::copy(city.pki().join("crl.pem"), &theirs).unwrap();
    let fed = federation(
        &city,
        "city",
        r#"["city-*"]"#,
        r#"["county-hq"]"#,
        "to = [\"node:*\"]\nroles = { command = \"township\" }",
    ) + &format!("crl = \"{}\"\n", theirs.display());
    let hq = county.node("county-hq", "command", "public").extra(&fed).start();
    wait_for("the city's list", Duration::from_secs(20), || {
        (hq.status().security.federated_revocation_lists.get("city") == Some(&1)).then_some(())
    });
    // The file is replaced by a list the county's CA signed: refused and logged, the city's
    // list stays in effect, and nothing of it counts for the county.
    county.issue("county-9", "command");
    cli_ok(&["pki", "revoke", "--dir", county.pki().to_str().unwrap(), "--node", "county-9"]);
    std::fs::remove_file(&theirs).unwrap();
    std::fs::copy(county.pki().join("crl.pem"), &theirs).unwrap();
    wait_for("the refusal in the log", Duration::from_secs(20), || {
        hq.log()
            .contains(&format!("{}: revocation list not signed", theirs.display()))
            .then_some(())
    });
    let s = hq.status();
    assert_eq!(s.security.federated_revocation_lists.get("city"), Some(&1));
    assert!(s.security.federated_revocation_lists.len() == 1, "{:?}", s.security);
}
