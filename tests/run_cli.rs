//! `topo run`'s edges: what it says and which exit code it returns when the file, the
//! topology or a flag is wrong; `--plan` shows where each task runs.

use std::process::Command;

fn topo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("t.topo.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn a_missing_file_is_an_io_error() {
    let (code, _, err) = topo(&["run", "/nonexistent/x.topo.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot read /nonexistent/x.topo.toml: "),
        "{err}"
    );
}

#[test]
fn a_duration_without_unit_is_a_usage_error() {
    let (code, _, err) = topo(&["run", "x.topo.toml", "--for", "30"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid duration `30`: use a number and a unit, like 500ms, 30s, 2m or 1h"),
        "{err}"
    );
}

#[test]
fn an_invalid_topology_is_reported_and_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[topology]\nname = \"bad\"\n[spouts.s]\ntype = \"random_sentences\"\n\
         [bolts.b]\ntype = \"no_such_type\"\ninputs = [\"s\"]\n",
    );
    let (code, out, err) = topo(&["run", &file]);
    assert_eq!(code, 1);
    // The validator's wording is its own; the run must name the culprit and stop.
    assert!(err.contains("no_such_type"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn plan_shows_every_task_in_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[topology]\nname = \"p\"\nworkers = 2\n[spouts.s]\ntype = \"random_sentences\"\n\
         [bolts.b]\ntype = \"split_words\"\nparallelism = 3\ninputs = [\"s\"]\n",
    );
    let (code, out, _) = topo(&["run", &file, "--plan"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "worker 0: 1 s[0], 3 b[1], 5 __acker[0]\nworker 1: 2 b[0], 4 b[2], 6 __acker[1]\n"
    );
}

#[test]
fn json_summary_is_one_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[topology]\nname = \"j\"\n[spouts.s]\ntype = \"random_sentences\"\ncount = 50\n\
         [bolts.b]\ntype = \"split_words\"\ninputs = [\"s\"]\n",
    );
    let (code, out, err) = topo(&["run", &file, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["topology"], "j");
    let ids: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s", "b", "__acker"]);
    assert_eq!(v["components"][0]["acked"], 50);
    assert_eq!(v["components"][1]["emitted"], 500);
    assert_eq!(v["components"][0]["failed_by"]["timeout"], 0);
}
