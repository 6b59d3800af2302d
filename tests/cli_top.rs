//! `topo top` in a real terminal (tmux): attached to a running word count it shows every
//! component with rates that change, fits 80 columns, and `q` leaves a clean prompt.

mod common;
mod tmux_support;

use std::path::Path;

use tmux_support::{row, Tmux};

#[test]
fn top_shows_every_component_with_live_rates_and_quits_cleanly() {
    common::require("tmux", &["-V"], "tmux (apt-get install tmux)");
    let served = common::Served::start(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let tmux = Tmux::start(dir.path(), 100, 30);
    let command = format!("topo top --addr {}", served.addr);
    tmux.type_line(&command);

    let components = ["sentences", "split", "count", "print", "__acker"];
    let has_all = |s: &str| components.iter().all(|c| row(s, c).is_some());
    let first = tmux.wait_for("every component is on screen", |s| {
        has_all(s) && s.contains("exec/s") && s.contains("restarts")
    });
    let emitted = |s: &str| row(s, "sentences").map(|r| r[2].to_string());
    let before = emitted(&first);
    let second = tmux.wait_for("the spout's rate changes", |s| {
        has_all(s) && emitted(s) != before
    });
    assert!(second.contains("wordcount"), "{second}");

    // 80 columns: every column still shows.
    tmux.run(&["resize-window", "-t", "top", "-x", "80", "-y", "24"]);
    // (Polled: a capture may catch the screen mid-redraw after the resize.)
    tmux.wait_for("the table fits 80 columns with every column", |s| {
        s.lines().all(|l| l.chars().count() <= 80)
            && s.contains("pend")
            && s.contains("cmpl99")
            && has_all(s)
    });

    tmux.run(&["send-keys", "-t", "top", "q"]);
    // The alternate screen goes first and the shell's prompt follows: wait
    // for both, so the check below sees the settled screen.
    let after = tmux.wait_for("top exits and the prompt returns", |s| {
        !s.contains("exec/s") && s.trim_end().ends_with('$')
    });
    let lines: Vec<&str> = after.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [format!("$ {command}").as_str(), "$"],
        "a clean prompt after exit:\n{after}"
    );
}
