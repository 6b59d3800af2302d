//! The web UI in a real browser: headless Chromium (Debian's `chromium`) loads the page of
//! a running `topo run --ui`; the DAG shows every component, an edge's rate changes
//! between two loads, and a screenshot is not blank.

mod web;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use web::start;

/// Spouts and bolts in three layers; every component must appear in the drawing.
const TOPOLOGY: &str = "[topology]\nname = \"shown\"\n\
    [spouts.numbers]\ntype = \"sequence\"\nparallelism = 2\n\
    [bolts.double]\ntype = \"map\"\nparallelism = 2\nfields = [\"n * 2 as d\"]\n\
    inputs = [\"numbers\"]\n\
    [bolts.keep]\ntype = \"filter\"\nwhere = \"d % 3 == 0\"\nfields = [\"d\"]\ninputs = [\"double\"]\n";

/// Runs headless Chromium with `args` on `url` (a profile in `dir`); returns its stdout.
fn chromium(dir: &Path, args: &[&str], url: &str) -> String {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!("chromium is not installed; run ./test (it installs it) or apt-get install chromium")
        });
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1400,1000",
            // Lets the page's timers run (its refresh every second) before the capture.
            "--virtual-time-budget=2500",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { out }, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium: {status}");
            return reader.join().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 3 minutes");
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// The rate labels of the DAG's edges in a dumped DOM: (`from->to`, text).
fn edge_rates(dom: &str) -> Vec<(String, String)> {
    dom.split("data-edge=\"")
        .skip(1)
        .map(|rest| {
            let (edge, rest) = rest.split_once('"').unwrap();
            let text = rest.split_once('>').unwrap().1.split('<').next().unwrap();
            (edge.replace("&gt;", ">"), text.to_string())
        })
        .collect()
}

#[test]
fn the_page_draws_the_dag_with_live_rates_and_a_screenshot_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&dir, TOPOLOGY, &["--ui", "127.0.0.1:0", "--for", "10m"]);
    let url = format!("http://{}/", run.addr);

    let first = chromium(dir.path(), &["--dump-dom"], &url);
    for id in ["numbers", "double", "keep"] {
        assert!(
            first.contains(&format!("class=\"node\" data-id=\"{id}\"")),
            "{id} is not drawn:\n{first}"
        );
    }
    let before = edge_rates(&first);
    let edges: Vec<&str> = before.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(edges, ["numbers->double", "double->keep"], "{first}");
    assert!(before.iter().all(|(_, r)| r.ends_with("/s")), "{before:?}");
    assert!(
        first.contains("\">numbers</td>"),
        "the component table:\n{first}"
    );

    // A later load shows other rates (the board has new reports every second).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let again = edge_rates(&chromium(dir.path(), &["--dump-dom"], &url));
        if again != before {
            assert_eq!(again.len(), before.len(), "{again:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rates never changed: {before:?}"
        );
    }

    let shot = dir.path().join("ui.png");
    let arg = format!("--screenshot={}", shot.display());
    chromium(dir.path(), &[&arg], &url);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    assert!(
        (info.width, info.height) == (1400, 1000) && colours.len() > 50,
        "{}x{} with {} colours",
        info.width,
        info.height,
        colours.len()
    );
    // The capacity colours of the nodes (hsl(h, 65%, 42%)) are in it: green to red.
    let saturated = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| p[0].abs_diff(p[1]) > 60 || p[1].abs_diff(p[2]) > 60)
        .count();
    assert!(saturated > 2000, "{saturated} coloured pixels");
}
