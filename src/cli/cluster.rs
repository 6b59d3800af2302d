//! `topo submit|list|kill|activate|deactivate|rebalance`: the client verbs of cluster mode.
//!
//! Each verb opens one authenticated connection to the coordinator (see
//! `topo_cluster::control`), asks, prints the answer. The cluster secret comes from
//! `--secret-file PATH` or `TOPO_CLUSTER_SECRET`, never from the command line, where every
//! user of the host could read it in the process list.
//!
//! Exit codes: 0 done; 1 refused (a wrong secret, or the coordinator said no: unknown
//! topology, invalid file) or an invalid topology file; 2 I/O or usage (cannot connect,
//! cannot read a file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use topo_cluster::client::{self, ClientError};
use topo_cluster::control::{ControlError, HandshakeError};
use topo_cluster::proto::TopologyInfo;
use topo_cluster::secret::Secret;
use topo_engine::summary::CheckpointSummary;
use topo_engine::Registry;

use super::run::parse_duration;
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// The flags every client verb takes: where the coordinator is, where the secret is.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// The coordinator's address, as given to `topo coordinator --listen`; with standby
    /// coordinators, every one's (`A,B,C`): the first that accepts, the leader, answers.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',', required = true, value_parser = super::daemons::host_port)]
    coordinator: Vec<SocketAddr>,
    /// File holding the cluster secret (else the environment variable TOPO_CLUSTER_SECRET;
    /// neither: no secret, which a coordinator on loopback without one accepts).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

/// Arguments of `topo submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The `*.topo.toml` file (checked here first, as `topo validate` does).
    file: PathBuf,
    /// The executable the workers run: a binary built with `topo::cli::main_with` that
    /// has the topology's components (default: this `topo`). Uploaded in 1 MiB chunks
    /// unless the coordinator holds its SHA-256 already.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The topology's name (default: the file's `[topology] name`).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The largest resource archive to pack, in MiB (the coordinator has its own limit).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_archive_mib: u64,
    #[command(flatten)]
    remote: Remote,
}

/// Arguments of `topo list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print the same data as one JSON array, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Arguments of `topo kill`.
#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// The topology's name or id.
    name: String,
    /// How long to let in-flight messages drain after the spouts stop: seconds (`30`) or
    /// a duration (`500ms`, `2m`). Default: the topology's message timeout.
    #[arg(long, value_name = "SECS", value_parser = parse_wait)]
    wait: Option<Duration>,
    #[command(flatten)]
    remote: Remote,
}

/// Arguments of `topo activate` and `topo deactivate`.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The topology's name or id.
    name: String,
    #[command(flatten)]
    remote: Remote,
}

/// Arguments of `topo rebalance`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["workers", "parallelism"])))]
pub(crate) struct RebalanceArgs {
    /// The topology's name or id.
    name: String,
    /// The new number of worker processes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
    /// A component's new parallelism (repeatable). A checkpointed topology carries its
    /// state over from a committed checkpoint; any other restarts with empty state.
    #[arg(long, value_name = "COMPONENT=N", value_parser = parse_parallelism)]
    parallelism: Vec<(String, usize)>,
    #[command(flatten)]
    remote: Remote,
}

/// `count=4`: a component and its parallelism (the coordinator checks the range).
fn parse_parallelism(text: &str) -> Result<(String, usize), String> {
    let (component, n) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not COMPONENT=N"))?;
    let n = n
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("`{n}` in `{text}` is not a number of tasks"))?;
    Ok((component.trim().to_string(), n))
}

/// `30` is thirty seconds; anything else is a duration as `topo run --for` takes.
fn parse_wait(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid wait `{text}`: use seconds, like 30, or 500ms, 2m")),
        Err(_) => parse_duration(text),
    }
}

fn load_secret(remote: &Remote) -> Result<Secret, i32> {
    Secret::load(remote.secret_file.as_deref()).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// Prints `e` and returns its exit code: refusals are 1, the rest 2.
fn report(e: &ClientError) -> i32 {
    eprintln!("error: {e}");
    exit_code(e)
}

fn exit_code(e: &ClientError) -> i32 {
    match e {
        ClientError::Refused(_)
        | ClientError::Control(ControlError::Refused { .. })
        | ClientError::Control(ControlError::Connect {
            source: HandshakeError::PeerBadAuth { .. },
            ..
        }) => EXIT_INVALID,
        _ => EXIT_USAGE,
    }
}

/// Runs `f` on a runtime of its own; prints and maps its error.
fn call<T>(f: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, i32> {
    match client::block_on(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(report(&e)),
        Err(e) => {
            eprintln!("error: cannot start the I/O runtime: {e}");
            Err(EXIT_USAGE)
        }
    }
}

fn code(result: Result<(), i32>) -> i32 {
    result.err().unwrap_or(EXIT_OK)
}

/// Runs `topo submit`: prints the topology id on stdout.
pub(crate) fn submit(registry: &Registry, args: &SubmitArgs) -> i32 {
    code(submit_inner(registry, args))
}

fn submit_inner(registry: &Registry, args: &SubmitArgs) -> Result<(), i32> {
    let topology = super::load_file(&args.file, registry)?;
    if let Some(id) = super::run::stdin_readers(&topology).first() {
        eprintln!(
            "error: spout `{id}` (`{}`) cannot run in a cluster: a cluster worker has no \
             standard input\n\
             hint: run it with `topo run`, or read from a `tcp_lines` or `file_lines` spout",
            topo_spouts::stdin::KIND
        );
        return Err(EXIT_INVALID);
    }
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", args.file.display());
        EXIT_USAGE
    })?;
    let base = super::resources::base_dir(&args.file);
    let findings = super::resources::check(&topology, &base);
    super::resources::report(&args.file.display().to_string(), &findings)?;
    let max = args.max_archive_mib.saturating_mul(1024 * 1024);
    let archive = super::resources::pack(&topology, &base, max)?;
    let secret = load_secret(&args.remote)?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| {
            eprintln!("error: cannot find this executable: {e}");
            EXIT_USAGE
        })?,
    };
    check_binary(&binary)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| topology.name().to_string());
    let submission = client::Submission {
        name: &name,
        text: &text,
        binary: &binary,
        resources: archive.as_deref(),
    };
    let done = call(client::submit(
        &args.remote.coordinator,
        &secret,
        submission,
    ))?;
    let short = done.binary.get(..12).unwrap_or(&done.binary);
    if done.uploaded {
        eprintln!("uploaded {} (sha256 {short}…)", binary.display());
    } else {
        eprintln!(
            "the coordinator has {} already (sha256 {short}…)",
            binary.display()
        );
    }
    if let (Some(hash), Some(bytes)) = (&done.resources, &archive) {
        let short = hash.get(..12).unwrap_or(hash);
        let n = topology.resources().paths.len();
        if done.resources_uploaded {
            eprintln!(
                "uploaded the resources ({n} listed, {} bytes packed, sha256 {short}…)",
                bytes.len()
            );
        } else {
            eprintln!("the coordinator has the resources already (sha256 {short}…)");
        }
    }
    println!("{}", done.id);
    Ok(())
}

/// A clear message for a `--binary` that cannot be what the workers run.
fn check_binary(path: &Path) -> Result<(), i32> {
    let meta = std::fs::metadata(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        EXIT_USAGE
    })?;
    if !meta.is_file() {
        eprintln!("error: {} is not a file", path.display());
        return Err(EXIT_USAGE);
    }
    Ok(())
}

/// Runs `topo list`.
pub(crate) fn list(args: &ListArgs) -> i32 {
    code(list_inner(args))
}

fn list_inner(args: &ListArgs) -> Result<(), i32> {
    let secret = load_secret(&args.remote)?;
    let topologies = call(client::list(&args.remote.coordinator, &secret))?;
    if args.json {
        let json = serde_json::to_string_pretty(&topologies).map_err(|e| {
            eprintln!("error: cannot encode the list: {e}");
            EXIT_USAGE
        })?;
        println!("{json}");
    } else {
        print!("{}", table(&topologies));
    }
    Ok(())
}

/// Runs `topo kill`.
pub(crate) fn kill(args: &KillArgs) -> i32 {
    code(kill_inner(args))
}

fn kill_inner(args: &KillArgs) -> Result<(), i32> {
    let secret = load_secret(&args.remote)?;
    let wait = args.wait.map(|d| d.as_secs_f64());
    let said = call(client::kill(
        &args.remote.coordinator,
        &secret,
        &args.name,
        wait,
    ))?;
    println!("{said}");
    Ok(())
}

/// Runs `topo activate` (`on`) or `topo deactivate`.
pub(crate) fn activate(args: &NameArgs, on: bool) -> i32 {
    code(activate_inner(args, on))
}

fn activate_inner(args: &NameArgs, on: bool) -> Result<(), i32> {
    let secret = load_secret(&args.remote)?;
    let addr = &args.remote.coordinator;
    let said = if on {
        call(client::activate(addr, &secret, &args.name))?
    } else {
        call(client::deactivate(addr, &secret, &args.name))?
    };
    println!("{said}");
    Ok(())
}

/// Runs `topo rebalance`.
pub(crate) fn rebalance(args: &RebalanceArgs) -> i32 {
    code(rebalance_inner(args))
}

fn rebalance_inner(args: &RebalanceArgs) -> Result<(), i32> {
    let secret = load_secret(&args.remote)?;
    let said = call(client::rebalance(
        &args.remote.coordinator,
        &secret,
        &args.name,
        args.workers.map(|n| n as usize),
        args.parallelism.iter().cloned().collect(),
    ))?;
    println!("{said}");
    Ok(())
}

/// `topo list` as text: one line per topology, then its components, indented.
///
/// ```text
/// NAME       ID                    STATUS  WORKERS  UPTIME
/// wordcount  wordcount-1764355200  active  3/3      2m05s
///   checkpoints: last 13 (35.2 ms, 48213 bytes), 12 completed, 1 failed, 1 rollbacks
///   COMPONENT  KIND   TASKS  EMITTED  ACKED  FAILED
///   sentences  spout  1      1200     1200   0
/// ```
///
/// `WORKERS` is running/assigned; `TASKS` each component's parallelism; the
/// `checkpoints:` line only for a checkpointed topology.
pub(crate) fn table(topologies: &[TopologyInfo]) -> String {
    if topologies.is_empty() {
        return "no topologies\n".to_string();
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ID".to_string(),
        "STATUS".to_string(),
        "WORKERS".to_string(),
        "UPTIME".to_string(),
    ]];
    for t in topologies {
        let running = t.assignments.iter().filter(|w| w.running).count();
        rows.push(vec![
            t.name.clone(),
            t.id.clone(),
            t.status.name().to_string(),
            format!("{running}/{}", t.workers),
            uptime(t.uptime_secs),
        ]);
    }
    let top = widths(&rows);
    let mut out = String::new();
    push_row(&mut out, "", &rows[0], &top);
    for (t, row) in topologies.iter().zip(&rows[1..]) {
        push_row(&mut out, "", row, &top);
        if let Some(error) = &t.error {
            out.push_str(&format!("  error: {error}\n"));
        }
        if let Some(k) = &t.checkpoints {
            out.push_str(&format!("  {}\n", checkpoints_line(k)));
        }
        if t.components.is_empty() {
            continue;
        }
        let mut parts = vec![vec![
            "COMPONENT".to_string(),
            "KIND".to_string(),
            "TASKS".to_string(),
            "EMITTED".to_string(),
            "ACKED".to_string(),
            "FAILED".to_string(),
        ]];
        for c in &t.components {
            parts.push(vec![
                c.id.clone(),
                c.kind.clone(),
                t.parallelism
                    .get(&c.id)
                    .map_or_else(|| "-".to_string(), usize::to_string),
                c.emitted.to_string(),
                c.acked.to_string(),
                c.failed.to_string(),
            ]);
        }
        let w = widths(&parts);
        for row in &parts {
            push_row(&mut out, "  ", row, &w);
        }
    }
    out
}

/// `checkpoints: last 12 (35.2 ms, 48213 bytes), 12 completed, 0 failed, 1 rollbacks`.
fn checkpoints_line(k: &CheckpointSummary) -> String {
    let last = match k.last_completed {
        Some(id) => {
            let took = k
                .last_duration_ms
                .map_or_else(String::new, |ms| format!("{ms:.1} ms, "));
            format!("last {id} ({took}{} bytes)", k.size_bytes)
        }
        None => "none committed".to_string(),
    };
    format!(
        "checkpoints: {last}, {} completed, {} failed, {} rollbacks",
        k.completed, k.failed, k.rollbacks
    )
}

fn widths(rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

fn push_row(out: &mut String, indent: &str, row: &[String], widths: &[usize]) {
    let mut line = indent.to_string();
    for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
        if i + 1 == row.len() {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<w$}  "));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// `45s`, `2m05s`, `1h02m`, `3d04h`.
fn uptime(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use topo_cluster::proto::{ComponentInfo, Status, WorkerInfo};

    use super::*;

    fn worker(worker: usize, running: bool) -> WorkerInfo {
        WorkerInfo {
            worker,
            supervisor: Some(format!("127.0.0.{}:7100", worker + 2)),
            addr: None,
            running,
            restarts: 0,
        }
    }

    fn component(id: &str, kind: &str, emitted: u64, acked: u64, failed: u64) -> ComponentInfo {
        ComponentInfo {
            id: id.into(),
            kind: kind.into(),
            emitted,
            acked,
            failed,
        }
    }

    fn wordcount() -> TopologyInfo {
        TopologyInfo {
            id: "wordcount-1764355200".into(),
            name: "wordcount".into(),
            status: Status::Active,
            workers: 3,
            uptime_secs: 125.7,
            binary: "ab".repeat(32),
            resources: None,
            requirements: None,
            assignments: vec![worker(0, true), worker(1, true), worker(2, false)],
            components: vec![
                component("sentences", "spout", 1200, 1190, 3),
                component("split", "bolt", 9000, 9000, 0),
                component("count", "bolt", 9000, 8990, 0),
            ],
            parallelism: [("sentences", 1), ("split", 2), ("count", 4)]
                .map(|(c, n)| (c.to_string(), n))
                .into(),
            checkpoints: Some(CheckpointSummary {
                completed: 12,
                failed: 1,
                last_completed: Some(13),
                size_bytes: 48213,
                last_duration_ms: Some(35.25),
                rollbacks: 1,
                ..CheckpointSummary::default()
            }),
            error: None,
        }
    }

    #[test]
    fn the_list_table_has_a_line_per_topology_and_its_components() {
        let mut failed = wordcount();
        failed.id = "bad-1764355300".into();
        failed.name = "bad".into();
        failed.status = Status::Failed;
        failed.workers = 1;
        failed.uptime_secs = 3725.0;
        failed.assignments = vec![worker(0, false)];
        failed.components = vec![];
        failed.checkpoints = None;
        failed.error = Some("component `x` of type `nope` is not registered".into());
        let text = table(&[wordcount(), failed]);
        let expected = "\
NAME       ID                    STATUS  WORKERS  UPTIME
wordcount  wordcount-1764355200  active  2/3      2m05s
  checkpoints: last 13 (35.2 ms, 48213 bytes), 12 completed, 1 failed, 1 rollbacks
  COMPONENT  KIND   TASKS  EMITTED  ACKED  FAILED
  sentences  spout  1      1200     1190   3
  split      bolt   2      9000     9000   0
  count      bolt   4      9000     8990   0
bad        bad-1764355300        failed  0/1      1h02m
  error: component `x` of type `nope` is not registered
";
        assert_eq!(text, expected);
        assert_eq!(table(&[]), "no topologies\n");
    }

    #[test]
    fn uptimes_are_short() {
        let cases = [
            (0.0, "0s"),
            (59.9, "59s"),
            (60.0, "1m00s"),
            (3599.0, "59m59s"),
            (3600.0, "1h00m"),
            (90061.0, "1d01h"),
            (-1.0, "0s"),
            (f64::NAN, "0s"),
        ];
        for (secs, text) in cases {
            assert_eq!(uptime(secs), text, "{secs}");
        }
    }

    #[test]
    fn a_wait_is_seconds_or_a_duration() {
        assert_eq!(parse_wait("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_wait("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("soon").is_err());
    }

    #[test]
    fn refusals_exit_1_and_connection_trouble_2() {
        let refused = ClientError::Control(ControlError::Refused {
            by: Some(topo_cluster::control::Role::Coordinator),
            reason: "authentication failed (wrong cluster secret?)".into(),
        });
        assert_eq!(exit_code(&refused), EXIT_INVALID);
        assert_eq!(
            exit_code(&ClientError::Refused("no topology `x`".into())),
            EXIT_INVALID
        );
        let unreachable = ClientError::Control(ControlError::Connect {
            addr: "127.0.0.1:1".parse().expect("addr"),
            source: HandshakeError::TimedOut,
        });
        assert_eq!(exit_code(&unreachable), EXIT_USAGE);
        assert_eq!(exit_code(&ClientError::Closed), EXIT_USAGE);
    }
}
