//! Alert mail against a real SMTP server (maildev): replayed incidents arrive as the expected
//! threaded, multipart mails with an inline chart and no personal data; an SMTP outage and a
//! restart of the delivering side lose nothing and send nothing twice; `smtp-test` names the
//! stage that failed.
//!
//! Each test starts its own maildev on free ports; waits poll the inbox with generous
//! deadlines, never sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slawatch::alerts::incident::{Notification, NotificationKind};
use slawatch::alerts::policy::Audience;
use slawatch::alerts::smtp::{Stage, smtp_test};
use slawatch::alerts::{
    AlertService, Backoff, Deliverer, MailSettings, SmtpConfig, SmtpMailer, SystemClock, TlsMode,
};
use slawatch::store::Store;
use slawatch::store::notify_log::MailStatus;

use crate::alerts::{PLANTED_PII, Replay, describe, specs, stream, test_policy};
use crate::support::servers::MailDev;

const DEADLINE: Duration = Duration::from_secs(30);

fn smtp_config(mail: &MailDev) -> SmtpConfig {
    let mut cfg =
        SmtpConfig::from_url(&format!("smtp://{}", mail.smtp_addr()), TlsMode::None).unwrap();
    cfg.timeout = Duration::from_secs(5);
    cfg
}

/// Opens the store again after a drop. sled releases its file lock from a background thread
/// after `Drop` returns (spacejam/sled#1234), so poll until the lock is free.
fn reopen(dir: &std::path::Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reopening the store: {e}"),
        }
    }
}

fn open_service(store: &Store, cfg: &SmtpConfig) -> AlertService {
    let clock = Arc::new(SystemClock);
    let mailer = SmtpMailer::new(cfg).unwrap();
    AlertService::open(
        store,
        test_policy(),
        &specs(),
        |log| {
            Deliverer::new(log, Box::new(mailer), clock.clone()).with_backoff(Backoff {
                base_ms: 50,
                cap_ms: 1_000,
            })
        },
        clock.clone(),
        MailSettings {
            from: "slawatch@example.test".into(),
            fallback_to: vec![],
        },
    )
    .unwrap()
}

/// The notifications the pure engine emits for a stream: what must arrive.
fn expected(lines: &[Vec<u8>]) -> Vec<Notification> {
    let specs = specs();
    let mut sink = crate::alerts::EngineSink::new(test_policy(), &specs);
    let mut r = Replay::new(&specs);
    r.feed(lines, &mut sink);
    r.finish(&mut sink);
    sink.out
}

fn header<'a>(m: &'a Value, name: &str) -> Option<&'a str> {
    m["headers"][name].as_str()
}

fn recipients(m: &Value) -> Vec<String> {
    m["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["address"].as_str().unwrap().to_owned())
        .collect()
}

fn summary(msgs: &[Value]) -> String {
    msgs.iter()
        .map(|m| {
            format!(
                "{} {:?} {}",
                header(m, "message-id").unwrap_or("?"),
                recipients(m),
                m["subject"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn replayed_incidents_arrive_as_threaded_multipart_mails_without_personal_data() {
    let started = Instant::now();
    let mail = MailDev::start();
    let lines = stream(
        5,
        40,
        &[
            ("latency-tail", 8, 120),
            ("pii-leak", 20, 10),
            ("prompt-change", 26, 14 * 60),
        ],
    );
    let want = expected(&lines);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut service = open_service(&store, &smtp_config(&mail));
    let mut replay = Replay::new(&specs());
    replay.feed(&lines, &mut service);
    replay.finish(&mut service);
    let report = service.drain(DEADLINE).unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    let msgs = mail.wait_for_messages(want.len(), DEADLINE);
    assert_eq!(
        msgs.len(),
        want.len(),
        "mails:\n{}\nexpected:\n{}",
        summary(&msgs),
        describe(&want)
    );

    // Exactly the expected mails, in order: recipients, subjects, threads.
    for (m, n) in msgs.iter().zip(&want) {
        assert_eq!(header(m, "message-id"), Some(n.message_id.as_str()));
        assert_eq!(
            m["subject"].as_str(),
            Some(slawatch::alerts::render::subject(n).as_str())
        );
        assert_eq!(recipients(m), n.recipients);
        assert_eq!(header(m, "x-slawatch-incident"), Some(n.thread_id.as_str()));
    }
    let groups: Vec<(NotificationKind, Audience, String)> = want
        .iter()
        .filter(|n| n.group.objective != "drift")
        .map(|n| (n.kind, n.audience, n.group.id()))
        .collect();
    let lat = "support-bot-prod/latency-p99/ticket".to_owned();
    let pii = "support-bot-prod/pii/page".to_owned();
    assert_eq!(
        groups,
        [
            (NotificationKind::Firing, Audience::Oncall, lat.clone()),
            (NotificationKind::Resolved, Audience::Oncall, lat),
            (NotificationKind::Firing, Audience::Oncall, pii.clone()),
            (NotificationKind::Breach, Audience::Stakeholder, pii.clone()),
            (NotificationKind::Resolved, Audience::Oncall, pii.clone()),
            (NotificationKind::Recovered, Audience::Stakeholder, pii),
        ],
        "{}",
        describe(&want)
    );
    // The drift of the new prompt version is one on-call thread of its own.
    let drift: Vec<&Notification> = want
        .iter()
        .filter(|n| n.group.objective == "drift")
        .collect();
    assert!(!drift.is_empty(), "no drift mail:\n{}", describe(&want));
    assert_eq!(drift[0].kind, NotificationKind::Firing);
    assert!(drift.iter().all(|n| n.thread_id == drift[0].thread_id));
    let by_id: BTreeMap<&str, &Value> = msgs
        .iter()
        .map(|m| (header(m, "message-id").unwrap(), m))
        .collect();
    let on = |s: &str| s.to_owned();
    for m in &msgs {
        let subject = m["subject"].as_str().unwrap();
        if subject.starts_with("[SLA") {
            assert_eq!(
                recipients(m),
                [on("leads@example.test"), on("cx-director@example.test")]
            );
        } else {
            assert_eq!(recipients(m), [on("oncall@example.test")], "{subject}");
        }
        // Multipart: text, HTML, and the chart inline, referenced by cid.
        let html = m["html"].as_str().unwrap_or("");
        let text = m["text"].as_str().unwrap_or("");
        assert!(!text.is_empty() && html.contains("<table"), "{subject}");
        let atts = m["attachments"].as_array().unwrap();
        let png = atts
            .iter()
            .find(|a| a["contentType"] == "image/png")
            .unwrap_or_else(|| panic!("no inline PNG in {subject}: {atts:?}"));
        assert_eq!(png["contentDisposition"], "inline", "{subject}");
        assert!(
            png["contentId"].as_str().unwrap().ends_with("@slawatch"),
            "{atts:?}"
        );
        // maildev resolves `cid:` references of related parts into the image itself.
        assert!(
            html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo"),
            "the chart's cid did not resolve in {subject}"
        );
        let long: Vec<&str> = text.lines().filter(|l| l.chars().count() > 80).collect();
        assert!(long.is_empty(), "{subject}: {long:#?}\n{text}");
        // Replies name their thread's first mail, which arrived before them.
        if let Some(parent) = header(m, "in-reply-to") {
            assert_eq!(header(m, "references"), Some(parent));
            let root = by_id
                .get(parent)
                .unwrap_or_else(|| panic!("{subject} replies to unknown {parent}"));
            assert_eq!(
                header(root, "x-slawatch-incident"),
                header(m, "x-slawatch-incident")
            );
        }
        // No personal data in any part, headers included.
        let source = std::fs::read_to_string(m["source"].as_str().unwrap()).unwrap();
        for pii in PLANTED_PII {
            for (part, body) in [("subject", subject), ("text", text), ("html", html)] {
                assert!(!body.contains(pii), "`{pii}` in the {part} of {subject}");
            }
            assert!(!source.contains(pii), "`{pii}` in the source of {subject}");
        }
    }
    // Every resolved notice closes the thread its firing mail opened.
    for n in want.iter().filter(|n| {
        matches!(
            n.kind,
            NotificationKind::Resolved | NotificationKind::Recovered
        )
    }) {
        let m = by_id[n.message_id.as_str()];
        let root = n.references[0].as_str();
        assert_eq!(header(m, "in-reply-to"), Some(root));
        assert!(by_id.contains_key(root));
    }
    // Everything recorded was sent.
    let counts = service.log().counts().unwrap();
    assert_eq!(
        (counts.pending, counts.sent, counts.failed),
        (0, want.len() as u64, 0)
    );
    eprintln!("e2e mail test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn an_smtp_outage_and_a_restart_lose_nothing_and_send_nothing_twice() {
    let started = Instant::now();
    let mut mail = MailDev::start();
    let cfg = smtp_config(&mail);
    let lines = stream(
        5,
        30,
        &[
            ("latency-tail", 3, 120),
            ("pii-leak", 12, 10),
            ("pii-leak", 23, 10),
        ],
    );
    let want = expected(&lines);
    let third = lines.len() / 3;
    let dir = tempfile::tempdir().unwrap();
    let mut replay = Replay::new(&specs());

    // First third: the server is up.
    let store = Store::open(dir.path()).unwrap();
    let mut service = open_service(&store, &cfg);
    replay.feed(&lines[..third], &mut service);
    let early = service.recorded();
    assert!(early >= 2, "{}", describe(&want));
    mail.wait_for_messages(early as usize, DEADLINE);

    // Middle third: the server is down; halfway through, the delivering side restarts.
    mail.stop();
    let mid = third + third / 4;
    replay.feed(&lines[third..mid], &mut service);
    let before_restart = service.log().counts().unwrap();
    assert!(before_restart.pending > 0, "{before_restart:?}");
    drop(service);
    drop(store);
    let store = reopen(dir.path());
    let mut service = open_service(&store, &cfg);
    replay.feed(&lines[mid..2 * third], &mut service);
    let during = service.log().counts().unwrap();
    assert_eq!(
        during.sent, before_restart.sent,
        "nothing sent while the server is down"
    );
    assert!(
        during.pending > before_restart.pending,
        "{before_restart:?} {during:?}"
    );
    assert!(
        service
            .log()
            .pending()
            .unwrap()
            .iter()
            .all(|m| m.attempts >= 1 || m.last_error.is_none()),
        "pending mails carry their failed attempts"
    );

    // Last third: the server is back.
    mail.start_again();
    replay.feed(&lines[2 * third..], &mut service);
    replay.finish(&mut service);
    let report = service.drain(DEADLINE).unwrap();
    assert_eq!(report.pending, 0, "{report:?}");

    let msgs = mail.wait_for_messages(want.len(), DEADLINE);
    let got: Vec<&str> = msgs
        .iter()
        .map(|m| header(m, "message-id").unwrap())
        .collect();
    let unique: BTreeSet<&str> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "a mail arrived twice:\n{}",
        summary(&msgs)
    );
    let want_ids: BTreeSet<&str> = want.iter().map(|n| n.message_id.as_str()).collect();
    assert_eq!(
        unique,
        want_ids,
        "mails:\n{}\nexpected:\n{}",
        summary(&msgs),
        describe(&want)
    );
    // Delivery kept each thread in order: a reply never arrives before its root.
    for (i, m) in msgs.iter().enumerate() {
        if let Some(parent) = header(m, "in-reply-to") {
            assert!(
                got[..i].contains(&parent),
                "reply before its root:\n{}",
                summary(&msgs)
            );
        }
    }
    let all = service.log().all().unwrap();
    assert_eq!(all.len(), want.len());
    assert!(
        all.iter()
            .all(|m| matches!(m.status, MailStatus::Sent { .. }))
    );
    assert!(
        all.iter().any(|m| m.attempts > 0),
        "some mail should have needed a retry"
    );
    eprintln!("outage test: {:.1} s", started.elapsed().as_secs_f64());
}

/// A minimal SMTP server that rejects every recipient (`550`).
fn rejecting_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // smtp-test probes TCP first, then connects again for SMTP: serve every connection.
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            let _ = w.write_all(b"220 reject.test ESMTP\r\n");
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-reject.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("RCPT") {
                    b"550 5.1.1 no such user here\r\n"
                } else if cmd.starts_with("QUIT") {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                if w.write_all(reply).is_err() || cmd.starts_with("QUIT") {
                    break;
                }
                line.clear();
            }
        }
    });
    port
}

fn stages(r: &[slawatch::alerts::smtp::StageResult]) -> Vec<(Stage, bool)> {
    r.iter().map(|s| (s.stage, s.ok)).collect()
}

#[test]
fn smtp_test_names_the_stage_that_failed() {
    let mail = MailDev::start();
    let raw = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: slawatch smtp-test\r\n\r\nhello\r\n";
    let (from, to) = ("slawatch@example.test", "oncall@example.test");

    // Plaintext to this machine: every stage passes and the message arrives.
    let ok = smtp_test(&smtp_config(&mail), from, to, raw);
    assert_eq!(
        stages(&ok),
        [
            (Stage::DnsResolution, true),
            (Stage::TcpConnect, true),
            (Stage::Greeting, true),
            (Stage::SenderAccepted, true),
            (Stage::RecipientAccepted, true),
            (Stage::MessageAccepted, true),
        ],
        "{ok:#?}"
    );
    mail.wait_for_messages(1, DEADLINE);

    // STARTTLS is required by default: maildev does not offer it.
    let mut cfg = smtp_config(&mail);
    cfg.tls = TlsMode::Starttls;
    let r = smtp_test(&cfg, from, to, raw);
    assert_eq!(
        r.last().map(|s| (s.stage, s.ok)),
        Some((Stage::TlsHandshake, false)),
        "{r:#?}"
    );
    assert!(r.last().unwrap().detail.contains("STARTTLS"), "{r:#?}");

    // Implicit TLS against a plaintext server fails in the handshake.
    cfg.tls = TlsMode::Implicit;
    let r = smtp_test(&cfg, from, to, raw);
    assert_eq!(
        r.last().map(|s| (s.stage, s.ok)),
        Some((Stage::TlsHandshake, false)),
        "{r:#?}"
    );

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = smtp_config(&mail);
    cfg.port = port;
    let r = smtp_test(&cfg, from, to, raw);
    assert_eq!(
        r.last().map(|s| (s.stage, s.ok)),
        Some((Stage::TcpConnect, false)),
        "{r:#?}"
    );

    // A name that cannot resolve (`.invalid` is reserved, RFC 6761).
    let mut cfg = smtp_config(&mail);
    cfg.host = "no-such-host.invalid".into();
    cfg.tls = TlsMode::Starttls;
    let r = smtp_test(&cfg, from, to, raw);
    assert_eq!(stages(&r), [(Stage::DnsResolution, false)], "{r:#?}");

    // A server that knows no such recipient.
    let mut cfg = smtp_config(&mail);
    cfg.port = rejecting_server();
    let r = smtp_test(&cfg, from, to, raw);
    assert_eq!(
        r.last().map(|s| (s.stage, s.ok)),
        Some((Stage::RecipientAccepted, false)),
        "{r:#?}"
    );
    assert!(r.last().unwrap().detail.contains("550"), "{r:#?}");
}
