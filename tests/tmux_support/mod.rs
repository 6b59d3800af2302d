//! Shared by the `topo top` tests: a tmux server of the test's own running a clean shell,
//! whose screen is captured, and the cells of a table row on it.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server (its socket in a temporary folder) with one session, `top`, running
/// `bash` with the `topo` binary's folder first on `PATH` and `$ ` as the prompt; killed
/// on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts the server in `dir`, a `width` × `height` window, and waits for the prompt.
    pub fn start(dir: &Path, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let bin = Path::new(env!("CARGO_BIN_EXE_topo"))
            .parent()
            .expect("the binary's folder")
            .display()
            .to_string();
        let shell = format!(
            "env -i PATH={bin}:/usr/bin:/bin TERM=xterm-256color PS1='$ ' bash --norc --noprofile"
        );
        let made = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &shell,
        ]);
        assert!(made.status.success(), "{made:?}");
        tmux.wait_for("the prompt", |s| s.trim_end().ends_with('$'));
        tmux
    }

    /// Runs `tmux ARGS` against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "top", text, "Enter"]);
    }

    /// The screen now.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Captures the screen until `cond` holds (two minutes at most).
    pub fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "timed out waiting until {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The row of component `id` on `screen`, split into cells.
pub fn row<'a>(screen: &'a str, id: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&id))
}
