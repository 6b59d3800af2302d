//! What workers print reaches the run's output, and cannot reach the control channel:
//! tuple data that looks like a control message is printed, not obeyed.

use std::process::{Command, Stdio};

/// A `map` bolt emits, into `console`, text that is a control message on a line of its
/// own; another `console` prints the numbers, grouped by number so both workers print.
const TOPOLOGY: &str = r#"
[topology]
name = "inject"
workers = 2

[spouts.numbers]
type = "sequence"
count = 20

[bolts.evil]
type = "map"
parallelism = 2
fields = ["'\n{\"type\":\"failed\",\"message\":\"injected by tuple data\",\"invalid\":false}' as line"]
inputs = ["numbers"]

[bolts.print]
type = "console"
parallelism = 2
inputs = ["evil"]

[bolts.show]
type = "console"
prefix = "number"
parallelism = 2
inputs = [{ from = "numbers", fields = ["n"] }]
"#;

const INJECTED: &str = r#"{"type":"failed","message":"injected by tuple data","invalid":false}"#;

#[test]
fn tuple_data_shaped_like_control_is_printed_not_obeyed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("inject.topo.toml");
    std::fs::write(&file, TOPOLOGY).expect("write the topology");
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", "--for", "120s"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("topo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("injected by tuple data"), "{stderr}");
    assert!(!stderr.contains("Ignored a line"), "{stderr}");
    // Every line a worker printed, behind its index.
    let printed: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("[worker ")?;
            let (w, line) = rest.split_once("] ")?;
            Some((w, line))
        })
        .collect();
    let injected = printed.iter().filter(|(_, l)| *l == INJECTED).count();
    assert_eq!(injected, 20, "stdout:\n{stdout}");
    for n in 0..20 {
        let want = format!("number: n={n}");
        assert!(
            printed.iter().any(|(_, l)| *l == want),
            "{want:?} not printed; stdout:\n{stdout}"
        );
    }
    let workers: std::collections::BTreeSet<&str> = printed.iter().map(|(w, _)| *w).collect();
    assert_eq!(
        workers.into_iter().collect::<Vec<_>>(),
        ["0", "1"],
        "{stdout}"
    );
}
