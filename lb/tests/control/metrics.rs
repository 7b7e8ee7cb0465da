//! `lb ctl metrics` and `/metrics` scraped with curl, and the table fingerprint of several
//! balancers.

use crate::fixture::*;
use crate::harness::{LB, privileged};
use lab::Lab;
use std::collections::BTreeMap;

/// `curl -sS -i URL` in `host` (a real scrape, as Prometheus makes it): (status line, headers
/// lower-cased, body).
fn curl(lab: &Lab, host: &str, args: &[&str]) -> (String, String, String) {
    let out = lab
        .run_in(host, || {
            std::process::Command::new("curl")
                .args(["-sS", "-i", "--max-time", "5"])
                .args(args)
                .output()
        })
        .unwrap()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// Samples by metric name: the (labels, value) of each.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// The samples of an exposition, read by a Prometheus text-format parser.
fn scrape(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut by = BTreeMap::<String, Vec<_>>::new();
    for s in parsed.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{}: not a counter or gauge: {other:?}", s.metric),
        };
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        by.entry(s.metric).or_default().push((labels, value));
    }
    by
}

/// The value of `metric` whose labels include `with`.
fn sample(m: &Samples, metric: &str, with: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = m
        .get(metric)
        .unwrap_or_else(|| panic!("no {metric} in {m:#?}"))
        .iter()
        .filter(|(l, _)| {
            with.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{metric} {with:?}: {found:?}");
    found[0]
}

#[test]
fn metrics_are_scraped_over_http_and_printed_by_lb_ctl() {
    if !lab::testing::privileged_with(
        "metrics_are_scraped_over_http_and_printed_by_lb_ctl",
        "curl",
    ) {
        return;
    }
    let s = setup(&["--metrics", "10.0.0.1:9100"], &[], &["h2", "h4"]);
    assert!(
        s.server
            .log()
            .contains("metrics http://10.0.0.1:9100/metrics"),
        "{}",
        s.server.log()
    );
    let by = spread(&s.lab, 30);
    let (status, headers, body) = curl(&s.lab, "h3", &["http://10.0.0.1:9100/metrics"]);
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    eprintln!("{body}");
    let m = scrape(&body);
    // Per backend, what the clients saw; the registrations; the queue; the table's fingerprint
    // as `lb ctl state` shows it.
    for h in ["h2", "h4"] {
        let flows = sample(&m, "lb_backend_flows_total", &[("backend", h)]);
        assert_eq!(flows, by.get(h).copied().unwrap_or(0) as f64, "{h}: {by:?}");
        assert!(sample(&m, "lb_backend_packets_total", &[("backend", h)]) >= 3.0 * flows);
        assert_eq!(
            sample(
                &m,
                "lb_backend_status",
                &[("backend", h), ("status", "active")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &m,
                "lb_backend_status",
                &[("backend", h), ("status", "down")]
            ),
            0.0
        );
    }
    assert_eq!(sample(&m, "lb_registrations_total", &[]), 2.0);
    assert_eq!(sample(&m, "lb_registered_backends", &[]), 2.0);
    for cause in ["queue_full", "socket_full"] {
        assert_eq!(
            sample(
                &m,
                "lb_queue_dropped_packets_total",
                &[("queue", "0"), ("cause", cause)]
            ),
            0.0
        );
    }
    let state = ctl(&s.server, &["state"]);
    let print = state["table_fingerprint"].as_str().expect("a fingerprint");
    assert_eq!(print.len(), 16, "{state}");
    assert_eq!(
        sample(&m, "lb_table_fingerprint_info", &[("fingerprint", print)]),
        1.0
    );
    assert!(sample(&m, "lb_received_packets_total", &[]) >= 90.0);

    // `lb ctl metrics` prints the same families.
    let out = std::process::Command::new(LB)
        .args([
            "ctl",
            "--socket",
            s.server.sock.to_str().unwrap(),
            "metrics",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let by_ctl = scrape(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        by_ctl.keys().collect::<Vec<_>>(),
        m.keys().collect::<Vec<_>>()
    );

    // Anything but GET /metrics is refused, with the status saying why.
    let (status, _, body) = curl(&s.lab, "h3", &["http://10.0.0.1:9100/"]);
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
    let (status, headers, _) = curl(
        &s.lab,
        "h3",
        &["-X", "POST", "http://10.0.0.1:9100/metrics"],
    );
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
}

#[test]
fn balancers_with_the_same_backends_and_key_show_one_table_fingerprint() {
    if !privileged("balancers_with_the_same_backends_and_key_show_one_table_fingerprint") {
        return;
    }
    let mut lab = up();
    let args = |key: &'static str| {
        [
            "server",
            "--vip",
            "10.0.0.50",
            "--backend",
            "h2=10.0.0.2",
            "--backend",
            "h4=10.0.0.4",
            "--hash-key",
            key,
        ]
    };
    let a = start(&mut lab, "h1", "a", &args("one key"));
    let b = start(&mut lab, "h3", "b", &args("one key"));
    let c = start(&mut lab, "h5", "c", &args("another key"));
    let print = |lb: &Lb| {
        ctl(lb, &["state"])["table_fingerprint"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(print(&a), print(&b));
    assert_ne!(print(&a), print(&c), "another key, another table");
    // A drain on one balancer only: they disagree until it ends.
    let agreed = print(&a);
    ctl(&a, &["drain", "h4"]);
    assert_ne!(print(&a), print(&b));
    ctl(&a, &["undrain", "h4"]);
    assert_eq!(print(&a), agreed);
}
