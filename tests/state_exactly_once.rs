//! Exactly-once state across `kill -9`: a checkpointed word count over three worker
//! processes, one of them killed three times mid-run, still writes every word's exact
//! count, once, to its sink — with acking off (recovery by rollback alone) and on.
//!
//! The checkpoints go to a local folder, or to a Redis server (`state_backend = "redis"`).
//!
//! The input is 2,000,000 lines of five words each (10 M words, 500 distinct), long
//! enough in a debug build that the run is still reading when each kill lands: a kill
//! waits for the workers to run again and for a checkpoint committed after the last
//! rollback.

mod redis_support;
mod state_support;
mod workers_support;

use std::collections::BTreeMap;

use redis_support::RedisServer;
use state_support::{committed, count_into_sink, sink_lines, write_input};
use workers_support::Topo;

const LINES: usize = 2_000_000;
const KILLS: usize = 3;

/// Where the checkpoints go.
enum Store<'a> {
    Local,
    Redis(&'a RedisServer),
}

fn killed_three_times_counts_exactly(acking: bool, store: Store<'_>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (settings, committed_ids): (String, Box<dyn Fn() -> Vec<u64> + '_>) = match store {
        Store::Local => {
            let state = dir.path().join("state");
            (
                "state_dir = \"state\"".into(),
                Box::new(move || committed(&state)),
            )
        }
        Store::Redis(server) => (
            format!(
                "state_backend = \"redis\"\nstate_url = \"{}\"",
                server.url()
            ),
            Box::new(move || server.committed_checkpoints("wc")),
        ),
    };
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let file = dir.path().join("wc.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "wc"
workers = 3
acking = {acking}
checkpoint_interval_secs = 1
{settings}

[spouts.lines]
type = "file_lines"
path = "in.txt"

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["lines"]

{}"#,
            count_into_sink("split", 2)
        ),
    )
    .expect("write topology");
    let topo = Topo::start(&file, dir.path(), &[]);
    topo.kill_after_commits(3, KILLS, &committed_ids);
    topo.wait_rolled_back(KILLS);
    let lines = sink_lines(&dir.path().join("out.jsonl"));
    let mut got = BTreeMap::new();
    for (word, count) in &lines {
        assert!(
            got.insert(word.clone(), *count).is_none(),
            "`{word}` is in the sink twice"
        );
    }
    assert_eq!(lines.len(), want.len(), "one line per word");
    assert_eq!(got, want, "exact counts");
}

#[test]
fn a_word_count_killed_three_times_counts_exactly_with_acking_off() {
    killed_three_times_counts_exactly(false, Store::Local);
}

#[test]
fn a_word_count_killed_three_times_counts_exactly_with_acking_on() {
    killed_three_times_counts_exactly(true, Store::Local);
}

#[test]
fn a_word_count_with_its_state_in_redis_killed_three_times_counts_exactly() {
    let server = RedisServer::start();
    killed_three_times_counts_exactly(false, Store::Redis(&server));
}
