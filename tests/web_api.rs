//! `topo run --ui`: a script reads the JSON API of a running topology — every component,
//! the edges with their rates, the 1 min / 10 min / whole-run tables, the workers, the
//! failures with sample message ids, the plan — and `/metrics` on the same port. Several
//! scrapers at once, a client trickling a byte every 4 s, and a prompt exit (#15.5).

mod web;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use web::{get, get_json, start, Run};

/// A topology whose bolt fails every tenth number (`100 / (n % 10)`), so there are
/// failures with message ids, then a sink.
const FAILING: &str = "[topology]\nname = \"api\"\n\
    [spouts.numbers]\ntype = \"sequence\"\nparallelism = 2\n\
    [bolts.divide]\ntype = \"map\"\nparallelism = 2\nfields = [\"100 / (n % 10) as q\"]\n\
    inputs = [\"numbers\"]\n\
    [bolts.sink]\ntype = \"map\"\nfields = [\"q + 1 as r\"]\ninputs = [\"divide\"]\n";

fn detail(run: &Run, id: &str) -> serde_json::Value {
    get_json(&run.addr, &format!("/api/v1/topologies/{id}"))
}

/// Polls the topology's document until `ok` holds (at most a minute).
fn until(
    run: &Run,
    id: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = detail(run, id);
        if ok(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{d:#}");
        std::thread::park_timeout(Duration::from_millis(200));
    }
}

fn find<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list:#}"))
}

#[test]
fn the_json_api_describes_a_running_topology() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&dir, FAILING, &["--ui", "127.0.0.1:0", "--for", "5m"]);

    let list = get_json(&run.addr, "/api/v1/topologies");
    assert_eq!(list["mode"], "run");
    assert_eq!(list["actions"], false);
    assert_eq!(list["topologies"][0]["id"], "api");

    let d = until(&run, "api", "had failures and rates", |d| {
        d["failures"].as_array().is_some_and(|f| !f.is_empty())
            && d["graph"]["edges"][0]["per_sec"].as_f64().unwrap_or(0.0) > 0.0
            && d["workers"][0]["cpu_percent"].is_number()
    });
    assert_eq!(d["status"], "running");
    assert_eq!(d["tasks"], 2 + 2 + 1 + 1, "with the acker");

    // The graph: every component, in layers, every edge with a rate.
    let nodes = &d["graph"]["nodes"];
    for (id, layer, par) in [("numbers", 0, 2), ("divide", 1, 2), ("sink", 2, 1)] {
        let n = find(nodes, "id", id);
        assert_eq!(
            (n["layer"].as_u64(), n["parallelism"].as_u64()),
            (Some(layer), Some(par))
        );
        assert!(
            n["capacity"]
                .as_f64()
                .is_some_and(|c| (0.0..=1.0).contains(&c)),
            "{n}"
        );
    }
    let edge = find(&d["graph"]["edges"], "to", "divide");
    assert_eq!(
        (&edge["from"], &edge["grouping"], &edge["exact"]),
        (&"numbers".into(), &"shuffle".into(), &true.into())
    );

    // Components: rates, totals, failures by reason, latencies, queues.
    let divide = find(&d["components"], "id", "divide");
    assert_eq!(divide["tasks"].as_array().unwrap().len(), 2);
    assert!(
        divide["rates"]["executed"].as_f64().unwrap() > 0.0,
        "{divide}"
    );
    let failed = divide["totals"]["failed"].as_u64().unwrap();
    assert!(
        failed > 0 && divide["failed_by"]["explicit"] == failed,
        "{divide}"
    );
    assert!(divide["execute_p99_ms"].is_number(), "{divide}");
    let numbers = find(&d["components"], "id", "numbers");
    assert!(numbers["complete_p99_ms"].is_number(), "{numbers}");
    assert!(numbers["pending"].is_u64());
    assert_eq!(find(&d["components"], "id", "__acker")["kind"], "acker");

    // The tables over 1 min, 10 min and the whole run.
    let windows: Vec<&str> = d["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["1m", "10m", "all"]);
    let all = find(&d["windows"], "window", "all");
    let row = find(&all["rows"], "id", "divide");
    assert!(row["totals"]["executed"].as_u64().unwrap() > 0, "{row}");

    // The worker is this process: its pid, memory and CPU.
    let w = &d["workers"][0];
    assert_eq!(w["pid"].as_u64(), Some(u64::from(run.child.id())));
    assert!(w["rss_bytes"].as_u64().unwrap() > 1 << 20, "{w}");
    assert_eq!(w["restarts"], 0);
    assert!(w["host"].as_str().is_some_and(|h| !h.is_empty()), "{w}");

    // Failures by reason with sample message ids: every tenth number fails.
    let f = find(&d["failures"], "component", "numbers");
    assert_eq!(f["reason"], "explicit");
    let ids: Vec<u64> = f["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["msg_id"].as_u64().unwrap())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|i| i % 10 == 0),
        "{ids:?}"
    );
    let bolt = find(&d["failures"], "component", "divide");
    assert!(
        bolt["samples"][0]["root"]
            .as_str()
            .unwrap()
            .starts_with("0x"),
        "{bolt}"
    );

    // The plan: every task, each in worker 0.
    let plan = d["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 6);
    assert!(plan.iter().all(|p| p["worker"] == 0));

    // The parts alone, /metrics on the same port, and the errors.
    assert_eq!(
        get_json(&run.addr, "/api/v1/topologies/api/plan")
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let (head, body) = get(&run.addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.contains("topo_tuples_executed_total{"), "{body}");
    let (head, body) = get(&run.addr, "/api/v1/topologies/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert_eq!(body, r#"{"message":"no topology nope"}"#);
    let (head, _) = get(&run.addr, "/api/v1/topologies/api/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let mut s = TcpStream::connect(&run.addr).unwrap();
    write!(
        s,
        "POST /api/v1/topologies/api/kill HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(
        text.contains("no actions here: `topo run` serves none"),
        "{text}"
    );
}

#[test]
fn rates_move_and_the_whole_run_table_grows() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&dir, FAILING, &["--ui", "127.0.0.1:0", "--for", "5m"]);
    let executed = |d: &serde_json::Value| {
        find(&find(&d["windows"], "window", "all")["rows"], "id", "sink")["totals"]["executed"]
            .as_u64()
            .unwrap()
    };
    let first = until(&run, "api", "executed", |d| executed(d) > 0);
    let before = executed(&first);
    until(&run, "api", "executed more", |d| executed(d) > before);
}

/// Opens a connection that sends a request head one byte every 4 s from another thread;
/// returns when the server closes it, with how long that took.
fn trickle(addr: String) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut next = Instant::now();
        let mut i = 0;
        let mut buf = [0u8; 256];
        loop {
            if Instant::now() >= next && i < head.len() {
                if s.write_all(&head[i..i + 1]).is_err() {
                    return started.elapsed();
                }
                i += 1;
                next += Duration::from_secs(4);
            }
            match s.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
        }
    })
}

#[test]
fn tricklers_do_not_hold_the_server_and_get_cut_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(
        &dir,
        FAILING,
        &["--metrics-addr", "127.0.0.1:0", "--for", "5m"],
    );
    let tricklers: Vec<_> = (0..8).map(|_| trickle(run.addr.clone())).collect();
    // While eight clients hold connections open, several scrapers are answered at once.
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            let addr = run.addr.clone();
            std::thread::spawn(move || get(&addr, "/metrics"))
        })
        .collect();
    for s in scrapers {
        let (head, _) = s.join().unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    assert!(
        tricklers.iter().all(|t| !t.is_finished()),
        "the tricklers are still connected"
    );
    // Each trickler is cut when its head is not in within the deadline (5 s), long
    // before its 35-byte head would have arrived (140 s).
    for t in tricklers {
        let held = t.join().unwrap();
        assert!(held < Duration::from_secs(30), "held {held:?}");
    }
}

#[test]
fn the_run_ends_promptly_while_a_client_trickles() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start(
        &dir,
        FAILING,
        &["--metrics-addr", "127.0.0.1:0", "--for", "1s"],
    );
    let connected = Instant::now();
    let t = trickle(run.addr.clone());
    let deadline = connected + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "topo run did not end");
        std::thread::park_timeout(Duration::from_millis(50));
    };
    let ended = connected.elapsed();
    assert!(status.success(), "{status}");
    // The run lasts 1 s; the trickler's head would take 140 s and the server's deadline
    // for it is 5 s: the process ends without waiting for either.
    assert!(ended < Duration::from_secs(5), "ended after {ended:?}");
    let held = t.join().unwrap();
    assert!(held <= ended + Duration::from_secs(1), "held {held:?}");
}
