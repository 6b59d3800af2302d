//! The builder and the TOML loader write the same spec; the checked topology has every
//! grouping, named and direct streams, and Storm's setting defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use topo_dsl::{Grouping, Kind, Settings, StreamDecl, Topology};
use topo_engine::{Bolt, BoltOutput, Poll, Registry, Result, Spout, SpoutOutput, Tuple};

const WORDCOUNT: &str = include_str!("../examples/wordcount.topo.toml");

fn wordcount_builder() -> topo_dsl::TopologyBuilder {
    Topology::builder("wordcount")
        .workers(1)
        .acking(true)
        .message_timeout_secs(30.0)
        .max_spout_pending(1000)
        .spout("sentences", "random_sentences")
        .parallelism(1)
        .bolt("split", "split_words")
        .parallelism(2)
        .shuffle("sentences")
        .bolt("count", "word_count")
        .parallelism(2)
        .fields("split", ["word"])
        .bolt("print", "ranking")
        .tick_secs(1.0)
        .global("count")
        .topology()
}

#[test]
fn wordcount_is_the_same_spec_and_topology_from_toml_and_from_the_builder() {
    let (from_file, problems) = topo_dsl::parse(WORDCOUNT);
    assert!(problems.is_empty(), "{problems}");
    assert_eq!(from_file, wordcount_builder().spec());

    let registry = topo::default_registry();
    let loaded = topo_dsl::load(WORDCOUNT, &registry).expect("wordcount is valid");
    let built = wordcount_builder()
        .build(&registry)
        .expect("wordcount is valid");
    assert_eq!(loaded, built);

    let ids: Vec<&str> = loaded.components().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["sentences", "split", "count", "print"]);
    let (count, c) = loaded.component("count").expect("count exists");
    assert_eq!(count, 2);
    assert_eq!(c.inputs[0].grouping, Grouping::Fields(vec!["word".into()]));
    assert_eq!(
        c.output("default").map(|s| s.fields.clone()),
        Some(vec!["word".into(), "count".into()])
    );
    let subs: Vec<usize> = loaded.subscribers(1, "default").map(|(i, _)| i).collect();
    assert_eq!(subs, [2]);
    assert_eq!((loaded.task_count(), loaded.edge_count()), (6, 3));
}

#[test]
fn settings_default_like_storm() {
    let registry = topo::default_registry();
    let minimal = "[spouts.s]\ntype = \"random_sentences\"\n";
    let t = topo_dsl::load(minimal, &registry).expect("valid");
    assert_eq!(t.name(), "topology");
    assert_eq!(t.settings(), &Settings::default());
    assert_eq!(
        (
            t.settings().workers,
            t.settings().ackers,
            t.settings().max_spout_pending
        ),
        (1, 1, Some(1000))
    );

    let t =
        topo_dsl::load(&format!("[topology]\nworkers = 3\n{minimal}"), &registry).expect("valid");
    assert_eq!(t.settings().ackers, 3, "one acker per worker by default");

    let off =
        format!("[topology]\nworkers = 2\nacking = false\nmessage_timeout_secs = 2.5\n{minimal}");
    let t = topo_dsl::load(&off, &registry).expect("valid");
    assert_eq!(
        t.settings(),
        &Settings {
            workers: 2,
            acking: false,
            ackers: 0,
            message_timeout: Duration::from_millis(2500),
            max_spout_pending: None,
            load_aware: true,
            encrypt: false,
            checkpoints: None,
        }
    );

    let zero = format!("[topology]\nmax_spout_pending = 0\nackers = 4\n{minimal}");
    let t = topo_dsl::load(&zero, &registry).expect("valid");
    assert_eq!(
        (t.settings().max_spout_pending, t.settings().ackers),
        (None, 4)
    );

    let tick = format!("{minimal}tick_secs = 5\n");
    let t = topo_dsl::load(&tick, &registry).expect("valid");
    assert_eq!(t.components()[0].tick, Some(Duration::from_secs(5)));
}

// A test-only registry with a multilang-like bolt whose outputs come from its config, and a
// spout with a named direct stream.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamConf {
    fields: Vec<String>,
    #[serde(default)]
    direct: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellConf {
    #[allow(dead_code)]
    command: Vec<String>,
    #[serde(default)]
    outputs: BTreeMap<String, StreamConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConf {}

struct Idle;
impl Spout for Idle {
    fn next_tuple(&mut self, _: &mut SpoutOutput<'_>) -> Result<Poll> {
        Ok(Poll::Done)
    }
}
impl Bolt for Idle {
    fn execute(&mut self, _: &Tuple, _: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.spout(
        "events",
        "Events on `default`, alerts on `alerts`, work on the direct stream `work`.",
        |_: &NoConf| {
            vec![
                StreamDecl::default_stream(["user", "kind"]),
                StreamDecl::named("alerts", ["user", "level"]),
                StreamDecl::named("work", ["job"]).direct(),
            ]
        },
        |_| Ok(Idle),
    );
    r.bolt(
        "shell",
        "A child process; its output streams are declared in its config.",
        |c: &ShellConf| {
            c.outputs
                .iter()
                .map(|(name, s)| StreamDecl {
                    name: name.clone(),
                    fields: s.fields.clone(),
                    direct: s.direct,
                })
                .collect()
        },
        |_| Ok(Idle),
    );
    r
}

const STREAMS: &str = r#"
[spouts.events]
type = "events"

[bolts.a]
type = "shell"
command = ["python3", "a.py"]
outputs = { default = { fields = ["user", "score"] } }
inputs = [
  { from = "events", grouping = "shuffle" },
  { from = "events", stream = "alerts", grouping = "partial_key", fields = ["user"] },
  { from = "events", stream = "work", grouping = "direct" },
]

[bolts.b]
type = "shell"
command = ["b"]
inputs = [
  { from = "a", grouping = "all" },
  { from = "events", grouping = "none" },
  { from = "events", stream = "alerts", grouping = "local_or_shuffle" },
]

[bolts.c]
type = "shell"
command = ["c"]
inputs = [{ from = "a", grouping = "global" }, { from = "events", fields = ["kind", "user"] }]
"#;

#[test]
fn every_grouping_named_and_direct_streams() {
    let registry = registry();
    let t = topo_dsl::load(STREAMS, &registry)
        .unwrap_or_else(|d| panic!("{}", d.render("STREAMS", STREAMS)));
    let cs = t.components();
    let groupings: Vec<(String, &str, Grouping)> = cs
        .iter()
        .flat_map(|c| {
            c.inputs.iter().map(move |i| {
                (
                    format!("{}->{}", cs[i.from].id, c.id),
                    i.stream.as_str(),
                    i.grouping.clone(),
                )
            })
        })
        .collect();
    let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        groupings,
        [
            ("events->a".to_string(), "default", Grouping::Shuffle),
            (
                "events->a".to_string(),
                "alerts",
                Grouping::PartialKey(f(&["user"]))
            ),
            ("events->a".to_string(), "work", Grouping::Direct),
            ("a->b".to_string(), "default", Grouping::All),
            ("events->b".to_string(), "default", Grouping::None),
            ("events->b".to_string(), "alerts", Grouping::LocalOrShuffle),
            ("a->c".to_string(), "default", Grouping::Global),
            (
                "events->c".to_string(),
                "default",
                Grouping::Fields(f(&["kind", "user"]))
            ),
        ]
    );
    assert_eq!(Grouping::NAMES.len(), 8);
    // The shell bolt declared its outputs from its config; b and c declared none.
    let (_, a) = t.component("a").expect("a exists");
    assert_eq!(a.outputs, [StreamDecl::default_stream(["user", "score"])]);
    assert_eq!(t.component("b").map(|(_, b)| b.outputs.len()), Some(0));
    assert_eq!(t.components()[0].kind, Kind::Spout);

    // The same through the builder.
    let built = Topology::builder("topology")
        .spout("events", "events")
        .bolt("a", "shell")
        .set("command", vec!["python3", "a.py"])
        .set(
            "outputs",
            toml::Value::Table(toml::toml! { default = { fields = ["user", "score"] } }),
        )
        .stream("events", "default", "shuffle")
        .input(topo_dsl::InputSpec {
            from: "events".into(),
            stream: Some("alerts".into()),
            grouping: Some("partial_key".into()),
            fields: Some(vec!["user".into()]),
            ..Default::default()
        })
        .direct("events", "work")
        .bolt("b", "shell")
        .set("command", vec!["b"])
        .all("a")
        .none("events")
        .stream("events", "alerts", "local_or_shuffle")
        .bolt("c", "shell")
        .set("command", vec!["c"])
        .global("a")
        .fields("events", ["kind", "user"])
        .build(&registry)
        .expect("valid");
    assert_eq!(built, t);
}

#[test]
fn streams_declared_by_config_are_checked() {
    let registry = registry();
    let text = r#"
[spouts.events]
type = "events"

[bolts.a]
type = "shell"
command = ["a"]
outputs = { scores = { fields = ["user", "score"], direct = true } }
inputs = [{ from = "events", stream = "work" }, { from = "events", stream = "alert" }]

[bolts.b]
type = "shell"
command = ["b"]
outputs = { default = { fields = ["x"], drect = true } }
inputs = [{ from = "a", stream = "scores", grouping = "direct" }, { from = "a", fields = ["user"] }]
"#;
    let Err(d) = topo_dsl::load(text, &registry) else {
        panic!("validated")
    };
    let got: Vec<(&str, Option<&str>)> = d
        .items
        .iter()
        .map(|d| (d.message.as_str(), d.hint.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "stream \"work\" of \"events\" is direct and needs grouping \"direct\", not \"shuffle\"",
                None
            ),
            (
                "\"events\" has no stream \"alert\"",
                Some("did you mean \"alerts\"? its streams: \"default\", \"alerts\" and \"work\"")
            ),
            (
                "bolt \"b\": unknown key \"outputs.default.drect\"",
                Some("did you mean \"direct\"?")
            ),
            (
                "\"a\" has no stream \"default\"",
                Some("its streams: \"scores\"")
            ),
        ]
    );
}

#[test]
fn a_missing_config_key_is_reported_at_the_type() {
    let text = "[spouts.e]\ntype = \"events\"\n[bolts.a]\ntype = \"shell\"\ninputs = [\"e\"]\n";
    let Err(d) = topo_dsl::load(text, &registry()) else {
        panic!("validated")
    };
    assert_eq!(d.messages(), ["bolt \"a\": missing key \"command\""]);
    let at = d.items[0]
        .span
        .map(|s| topo_dsl::diagnostic::position(text, s.start));
    assert_eq!(at.map(|(line, col, _)| (line, col)), Some((4, 1)));
    // `topo components` cannot show outputs that come from a config.
    let listing = topo::cli::components::listing(&registry());
    assert!(
        listing.contains("outputs: declared by its config"),
        "{listing}"
    );
    assert!(
        listing.contains("outputs: default(user, kind), alerts(user, level), work(job) (direct)"),
        "{listing}"
    );
}
