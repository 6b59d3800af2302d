//! `topo validate`: a one-line summary for a valid file, rustc-style diagnostics and exit
//! code 1 for an invalid one, exit code 2 for I/O and usage errors.

use std::process::{Command, Output};

fn topo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("topo runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_prints_a_one_line_summary_and_exits_0() {
    let out = topo(&["validate", "examples/wordcount.topo.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "examples/wordcount.topo.toml: ok: \"wordcount\", 4 components (1 spout, 3 bolts), 6 tasks, 3 edges, 1 worker, 1 acker\n"
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn an_invalid_file_prints_every_problem_rustc_style_and_exits_1() {
    let out = topo(&["validate", "tests/data/broken.topo.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    // The golden file stands `{KNOWN_TYPES}` for the registered types, which grow.
    let known = topo_dsl::Catalog::type_names(&topo::default_registry()).join(", ");
    assert_eq!(
        text(&out.stderr),
        include_str!("data/broken.topo.stderr").replace("{KNOWN_TYPES}", &known),
        "golden file tests/data/broken.topo.stderr"
    );
}

#[test]
fn several_files_are_all_checked_and_the_worst_exit_code_wins() {
    let out = topo(&[
        "validate",
        "tests/data/broken.topo.toml",
        "examples/wordcount.topo.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("examples/wordcount.topo.toml: ok: "));

    let out = topo(&[
        "validate",
        "tests/data/broken.topo.toml",
        "tests/data/no-such-file.topo.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: cannot read tests/data/no-such-file.topo.toml: "),
        "{stderr}"
    );
}

#[test]
fn io_and_usage_errors_exit_2() {
    let out = topo(&["validate", "tests/data/no-such-file.topo.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: cannot read tests/data/no-such-file.topo.toml: No such file or directory (os error 2)\n"
    );
    assert_eq!(topo(&["validate"]).status.code(), Some(2));
    assert_eq!(topo(&[]).status.code(), Some(2));
    assert_eq!(topo(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        topo(&["graph", "examples/wordcount.topo.toml", "--format", "png"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_file_that_is_not_utf8_is_an_invalid_topology() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bin.topo.toml");
    std::fs::write(&path, b"[topology]\nname = \"\xff\"\n").expect("write");
    let shown = path.display().to_string();
    let out = topo(&["validate", &shown]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{shown}:2:9: error: file is not valid utf-8\n")),
        "{stderr}"
    );
}

#[test]
fn help_and_version_document_the_exit_codes() {
    for verb in [
        &["--help"][..],
        &["validate", "--help"],
        &["graph", "--help"],
        &["components", "--help"],
    ] {
        let out = topo(verb);
        assert_eq!(out.status.code(), Some(0), "{verb:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Usage: topo"), "{verb:?}: {help}");
        assert!(
            help.contains("Exit status:\n  0  success\n  1  invalid topology"),
            "{verb:?}: {help}"
        );
        assert!(help.contains("  2  I/O or usage error"), "{verb:?}: {help}");
    }
    let out = topo(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("topo {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn topo_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("topo starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("topo runs")
}

#[test]
fn a_dash_reads_the_topology_from_standard_input() {
    let ok = std::fs::read("examples/wordcount.topo.toml").expect("example");
    let out = topo_stdin(&["validate", "-"], &ok);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("<stdin>: ok: \"wordcount\""),
        "{}",
        text(&out.stdout)
    );

    let broken = std::fs::read("tests/data/broken.topo.toml").expect("broken");
    let out = topo_stdin(&["validate", "-"], &broken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("<stdin>:"), "{stderr}");
    assert!(
        stderr.ends_with("error: <stdin>: invalid topology (15 errors)\n"),
        "{stderr}"
    );
}

#[test]
fn json_format_gives_every_error_with_its_span_on_stdout() {
    let out = topo(&[
        "validate",
        "--format",
        "json",
        "tests/data/broken.topo.toml",
        "examples/wordcount.topo.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");

    let broken = &lines[0];
    assert_eq!(broken["file"], "tests/data/broken.topo.toml");
    assert_eq!(broken["ok"], false);
    let errors = broken["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 15);
    // The same problems, places and hints as the human format (the golden file).
    let golden = include_str!("data/broken.topo.stderr");
    for e in errors {
        let message = e["message"].as_str().expect("message");
        let head = match (e["line"].as_u64(), e["column"].as_u64()) {
            (Some(line), Some(col)) => {
                format!("tests/data/broken.topo.toml:{line}:{col}: error: ")
            }
            _ => "tests/data/broken.topo.toml: error: ".to_owned(),
        };
        let first_line = message.lines().next().unwrap_or_default();
        let known = topo_dsl::Catalog::type_names(&topo::default_registry()).join(", ");
        let golden = golden.replace("{KNOWN_TYPES}", &known);
        assert!(
            golden.contains(&format!("{head}{first_line}")),
            "{head}{first_line} is not in the golden file"
        );
        if let Some(hint) = e["hint"].as_str() {
            assert!(golden.contains(&format!("= hint: {hint}")), "hint {hint}");
        }
        if let (Some(l), Some(el)) = (e["line"].as_u64(), e["end_line"].as_u64()) {
            assert!(el >= l);
        }
    }

    let ok = &lines[1];
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(ok["summary"]["name"], "wordcount");
    assert_eq!(ok["summary"]["tasks"], 6);
}

/// A folder with a topology file listing `resources` and whose multilang bolt runs
/// `split.py`.
fn job(resources: &str, files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in files {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "x\n").expect("write");
    }
    std::fs::write(
        dir.path().join("job.topo.toml"),
        format!(
            "[topology]\nname = \"job\"\n{resources}\n\
             [spouts.s]\ntype = \"sequence\"\ncount = 1\n\
             [bolts.split]\ntype = \"multilang\"\ncommand = [\"python3\", \"split.py\", \"--fast\"]\n\
             outputs = [\"word\"]\ninputs = [\"s\"]\n"
        ),
    )
    .expect("write");
    dir
}

#[test]
fn resources_must_exist_and_a_script_outside_them_is_warned_about() {
    let file = |d: &tempfile::TempDir| d.path().join("job.topo.toml").display().to_string();
    let ok = job(
        "resources = [\"split.py\", \"data/\"]\npython_requirements = \"data/req.txt\"",
        &["split.py", "data/req.txt"],
    );
    let out = topo(&["validate", &file(&ok)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");

    let missing = job("resources = [\"split.py\", \"lookup.csv\"]", &["split.py"]);
    let out = topo(&["validate", &file(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: resource \"lookup.csv\" does not exist in {}\n",
            file(&missing),
            missing.path().display()
        )
    );
    assert_eq!(text(&out.stdout), "");

    let unlisted = job("", &["split.py"]);
    let out = topo(&["validate", &file(&unlisted)]);
    assert_eq!(out.status.code(), Some(0), "a warning only");
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: {}: component \"split\": its command names \"split.py\", which is not \
             among the resources; in a cluster it will be missing (add it to [topology] resources)\n",
            file(&unlisted)
        )
    );
    let out = topo(&["validate", "--format", "json", &file(&unlisted)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn resources_outside_the_folder_or_requirements_outside_the_resources_are_errors() {
    let d = job(
        "resources = [\"../x\", \"/etc/passwd\", \"split.py\"]\npython_requirements = \"req.txt\"",
        &["split.py", "req.txt"],
    );
    let out = topo(&[
        "validate",
        d.path().join("job.topo.toml").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "error: resource \"../x\": it goes up with \"..\"; resources stay in the topology file's folder",
        "error: resource \"/etc/passwd\": it is absolute; resources are relative to the topology file",
        "error: \"python_requirements\" \"req.txt\" is not among the resources",
        "= hint: add \"req.txt\" (or its folder) to \"resources\"",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}
