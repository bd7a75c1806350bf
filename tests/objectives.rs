//! Delivery objectives with real relay processes: a FLASH order that cannot reach its
//! destination in time raises an alarm everywhere an operator looks (API, status, metrics,
//! log), and the alarm clears when the order arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use relaymesh::api_model::OverdueDoc;

#[test]
fn a_flash_order_past_its_objective_is_overdue_until_it_arrives() {
    let mesh = Mesh::new();
    let hq = mesh
        .node("county-hq", "command", "public")
        .extra("[objectives]\nflash = \"2s\"\nimmediate = \"1h\"");
    let t1 = mesh.node("township-01", "township", "public").peer(&hq);
    let hq_run = hq.start();
    let client = http();
    let overdue = || -> OverdueDoc {
        client.get(format!("{}/v1/overdue", hq.api_url())).send().unwrap().json().unwrap()
    };

    // township-01 is not running: the order waits at HQ past its 2 s objective.
    let id = hq_run.submit("node:township-01", "flash", "evacuate sector 4").unwrap();
    let other = hq_run.submit("node:township-01", "immediate", "report at 18:00").unwrap();
    let list = wait_for("the FLASH order to turn overdue", Duration::from_secs(20), || {
        Some(overdue()).filter(|d| !d.overdue.is_empty())
    });
    assert_eq!(list.overdue.len(), 1, "{list:?}");
    let item = &list.overdue[0];
    assert_eq!((item.id.as_str(), item.destination.as_str()), (id.as_str(), "township-01"));
    assert_eq!(item.precedence, "flash");
    assert!(item.due_at_us >= item.accepted_at_us + 2_000_000);
    let status = hq_run.status();
    assert_eq!((status.overdue.flash, status.overdue.immediate), (1, 0));
    let view = hq_run.message(&id, "0s");
    assert!(view.destinations[0].overdue);
    assert!(!hq_run.message(&other, "0s").destinations[0].overdue);
    let metrics = client.get(format!("{}/metrics", hq.api_url())).send().unwrap().text().unwrap();
    assert!(metrics.contains("relaymesh_overdue{precedence=\"flash\"} 1"), "{metrics}");
    let page = client.get(format!("{}/status", hq.api_url())).send().unwrap().text().unwrap();
    assert!(page.contains("OVERDUE: 1 FLASH"), "{page}");
    let text = cli_ok(&["status", "--api", &hq.api_url()]);
    assert!(text.contains("OVERDUE: 1 FLASH"), "{text}");
    assert!(hq_run.log().contains("overdue: not delivered within its objective"));

    // township-01 comes up: the order arrives and the alarm clears.
    let mut t1_run = t1.start();
    t1_run.wait_link("county-hq");
    assert_eq!(hq_run.message(&id, "20s").state, "delivered");
    wait_for("the alarm to clear", Duration::from_secs(20), || {
        overdue().overdue.is_empty().then_some(())
    });
    assert_eq!(hq_run.status().overdue.flash, 0);
    assert!(!hq_run.message(&id, "0s").destinations[0].overdue);
    assert!(hq_run.log().contains("no longer overdue"));
}

#[test]
fn an_objective_of_zero_or_beyond_the_longest_lifetime_is_refused_naming_the_key() {
    let mesh = Mesh::new();
    for (body, why) in [("flash = \"0s\"", "longer than 0s"), ("routine = \"40d\"", "max_lifetime")]
    {
        let spec =
            mesh.node("county-hq", "command", "public").extra(&format!("[objectives]\n{body}"));
        let config = spec.write_config();
        let out = cli(&["run", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("objectives.") && err.contains(why), "{err}");
    }
}

#[test]
fn a_late_routine_message_crosses_a_strict_satellite_link_and_status_says_so() {
    // The only link is satellite, closed to ROUTINE until it is 5 s late.
    let config = "[media.satellite]\nstrict = true\n\n[objectives]\nroutine = \"5s\"";
    let mesh = Mesh::new();
    let hq = mesh.node("county-hq", "command", "satellite").extra(config);
    let t1 = mesh.node("township-01", "township", "satellite").extra(config).peer(&hq);
    let hq_run = hq.start();
    let mut t1_run = t1.start();
    t1_run.wait_link("county-hq");
    let priority = hq_run.submit("node:township-01", "priority", "convoy at 14:00").unwrap();
    let routine = hq_run.submit("node:township-01", "routine", "daily report due").unwrap();
    assert_eq!(hq_run.message(&priority, "20s").state, "delivered");
    let held = hq_run.message(&routine, "0s");
    assert_eq!(held.state, "held", "ROUTINE crossed a strict satellite link on time: {held:?}");
    // Late after 5 s, it crosses.
    assert_eq!(hq_run.message(&routine, "20s").state, "delivered");
    let counters = hq_run.status().counters;
    assert_eq!(counters.routine.escalated, 1, "{counters:?}");
    let text = cli_ok(&["status", "--api", &hq.api_url()]);
    assert!(text.contains("late, sent on routes their precedence avoids: 1 routine"), "{text}");
    let metrics = http().get(format!("{}/metrics", hq.api_url())).send().unwrap().text().unwrap();
    let line = "relaymesh_messages_total{precedence=\"routine\",event=\"escalated\"} 1";
    assert!(metrics.contains(line), "{metrics}");
}
