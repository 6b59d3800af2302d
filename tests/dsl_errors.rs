//! A topology file with every kind of mistake: one run reports all of them, each at its
//! line and column with a hint, and the builder gets the same messages for the same
//! mistakes.

use topo_dsl::{diagnostic::position, InputSpec, Topology};
use topo_engine::Registry;

/// The four types of the word count, so that hints listing every type stay fixed as more
/// built-in types are added.
fn registry() -> Registry {
    let mut r = Registry::new();
    topo_spouts::sentences::register(&mut r);
    topo_bolts::words::register(&mut r);
    topo_bolts::console::register(&mut r);
    r
}

const BROKEN: &str = include_str!("data/broken.topo.toml");

/// (line, column, message, hint) of every problem in `data/broken.topo.toml`, in order.
const EXPECTED: [(usize, usize, &str, Option<&str>); 15] = [
    (4, 11, "invalid type for \"workers\": expected integer, found string", None),
    (5, 1, "unknown key \"wrokers\" in [topology]", Some("did you mean \"workers\"?")),
    (9, 1, "spout \"sentences\": unknown key \"sed\"", Some("did you mean \"seed\"?")),
    (
        10,
        1,
        "spout \"sentences\" cannot have inputs",
        Some("a spout is a source; subscribe a bolt instead"),
    ),
    (
        12,
        9,
        "spout \"ticker\" has no \"type\"",
        Some("known types: console, random_sentences, split_words, word_count"),
    ),
    (13, 1, "spout \"ticker\": \"parallelism\" must be at least 1, not 0", None),
    (17, 15, "invalid toml: extra `=`, expected nothing", None),
    (22, 13, "unknown input \"splt\"", Some("did you mean \"split\"?")),
    (
        26,
        29,
        "stream \"default\" of \"split\" has no field \"wrd\"",
        Some("did you mean \"word\"? its fields: \"word\""),
    ),
    (30, 29, "\"split\" has no stream \"words\"", Some("its streams: \"default\"")),
    (
        34,
        29,
        "direct grouping on stream \"default\" of \"split\", which is not direct",
        Some("only a stream declared direct can be grouped direct"),
    ),
    (
        37,
        1,
        "unknown component type \"split_wrds\"",
        Some("did you mean \"split_words\"? known types: console, random_sentences, split_words, word_count"),
    ),
    (40, 8, "bolt \"lonely\" has no inputs", Some("add inputs = [\"<component id>\"]")),
    (
        45,
        11,
        "cycle through \"loop_a\" and \"loop_b\"",
        Some("a topology must be acyclic; remove one of these inputs"),
    ),
    (
        49,
        61,
        "unknown key \"extra\" in input",
        Some("known keys: from, stream, grouping, fields"),
    ),
];

#[test]
fn one_run_reports_every_mistake_with_its_place_and_hint() {
    let registry = registry();
    let Err(diags) = topo_dsl::load(BROKEN, &registry) else {
        panic!("the broken topology validated");
    };
    let got: Vec<(usize, usize, &str, Option<&str>)> = diags
        .items
        .iter()
        .map(|d| {
            let span = d
                .span
                .unwrap_or_else(|| panic!("no position for {:?}", d.message));
            let (line, col, _) = position(BROKEN, span.start);
            (line, col, d.message.as_str(), d.hint.as_deref())
        })
        .collect();
    assert_eq!(got, EXPECTED);
}

#[test]
fn the_builder_gets_the_same_messages_for_the_same_mistakes() {
    let registry = registry();
    // The broken file's mistakes that can be made in code: a builder cannot write a syntax
    // error, a wrongly typed setting or an unknown key of [topology] or of an input.
    let mut spec = Topology::builder("broken")
        .spout("sentences", "random_sentences")
        .set("sed", 7)
        .shuffle("split")
        .spout("ticker", "random_sentences")
        .parallelism(0)
        .bolt("split", "split_words")
        .shuffle("sentences")
        .bolt("count", "word_count")
        .fields("splt", ["word"])
        .bolt("tally", "word_count")
        .fields("split", ["wrd"])
        .bolt("streamy", "console")
        .input(InputSpec {
            from: "split".into(),
            stream: Some("words".into()),
            ..InputSpec::default()
        })
        .bolt("directed", "console")
        .input(InputSpec {
            from: "split".into(),
            grouping: Some("direct".into()),
            ..InputSpec::default()
        })
        .bolt("mystery", "split_wrds")
        .shuffle("sentences")
        .bolt("lonely", "console")
        .bolt("loop_a", "split_words")
        .shuffle("loop_b")
        .bolt("loop_b", "split_words")
        .shuffle("loop_a")
        .all("sentences")
        .spec();
    // ... and a missing type, which the builder's signature rules out, by editing the spec.
    let ticker = spec
        .components
        .iter_mut()
        .find(|c| c.id == "ticker")
        .expect("ticker is declared");
    ticker.type_name = None;

    let Err(diags) = topo_dsl::validate(&spec, &registry) else {
        panic!("the broken topology validated");
    };
    assert!(diags.items.iter().all(|d| d.span.is_none()), "{diags:?}");
    let mut from_code: Vec<(&str, Option<&str>)> = diags
        .items
        .iter()
        .map(|d| (d.message.as_str(), d.hint.as_deref()))
        .collect();
    let loader_only = [
        "invalid type for \"workers\"",
        "unknown key \"wrokers\"",
        "invalid toml",
        "unknown key \"extra\"",
    ];
    let mut from_file: Vec<(&str, Option<&str>)> = EXPECTED
        .iter()
        .filter(|e| !loader_only.iter().any(|p| e.2.starts_with(p)))
        .map(|e| (e.2, e.3))
        .collect();
    from_code.sort();
    from_file.sort();
    assert_eq!(from_code, from_file);
}

#[test]
fn diagnostics_render_rustc_style() {
    let registry = registry();
    let text = "\
[spouts.sentences]
type = \"random_sentences\"

[bolts.split]
type = \"split_words\"
inputs = [\"sentencs\"]
";
    let Err(diags) = topo_dsl::load(text, &registry) else {
        panic!("validated");
    };
    assert_eq!(
        diags.render("t.topo.toml", text),
        "\
t.topo.toml:6:11: error: unknown input \"sentencs\"
  |
6 | inputs = [\"sentencs\"]
  |           ^^^^^^^^^^
  = hint: did you mean \"sentences\"?

"
    );
    // Without a file (the builder), the same message and hint.
    assert_eq!(
        Topology::builder("t")
            .spout("sentences", "random_sentences")
            .bolt("split", "split_words")
            .shuffle("sentencs")
            .build(&registry)
            .map(|_| ())
            .map_err(|d| d.to_string()),
        Err("error: unknown input \"sentencs\"\n  = hint: did you mean \"sentences\"?\n".into())
    );
}

/// Loads `text` and returns its messages, or panics if it validates.
fn messages(text: &str) -> Vec<String> {
    match topo_dsl::load(text, &registry()) {
        Ok(_) => panic!("validated:\n{text}"),
        Err(d) => d.items.into_iter().map(|d| d.message).collect(),
    }
}

const HEAD: &str = "[spouts.s]\ntype = \"random_sentences\"\n";

#[test]
fn groupings_are_checked_against_the_upstream_stream() {
    let bolt =
        |input: &str| format!("{HEAD}[bolts.b]\ntype = \"split_words\"\ninputs = [{input}]\n");
    assert_eq!(
        messages(&bolt("{ from = \"s\", grouping = \"fieldz\" }")),
        ["unknown grouping \"fieldz\""]
    );
    assert_eq!(
        messages(&bolt("{ from = \"s\", grouping = \"fields\" }")),
        ["fields grouping on \"s\" needs \"fields\""]
    );
    assert_eq!(
        messages(&bolt(
            "{ from = \"s\", grouping = \"partial_key\", fields = [] }"
        )),
        ["partial_key grouping on \"s\" needs \"fields\""]
    );
    assert_eq!(
        messages(&bolt(
            "{ from = \"s\", grouping = \"all\", fields = [\"sentence\"] }"
        )),
        ["\"fields\" only applies to fields and partial_key groupings, not \"all\""]
    );
    assert_eq!(
        messages(&bolt("\"s\", { from = \"s\", grouping = \"all\" }")),
        ["bolt \"b\" subscribes to stream \"default\" of \"s\" twice"]
    );
    assert_eq!(
        messages(&bolt("{ from = \"s\", fields = [\"sentence\", \"len\"] }")),
        ["stream \"default\" of \"s\" has no field \"len\""]
    );
}

#[test]
fn types_kinds_ids_and_settings_are_checked() {
    assert_eq!(
        messages("[spouts.s]\ntype = \"split_words\"\n"),
        ["\"split_words\" is a bolt type, not a spout type"]
    );
    assert_eq!(
        messages(&format!(
            "{HEAD}[bolts.s]\ntype = \"console\"\ninputs = [\"s\"]\n"
        )),
        ["duplicate component id \"s\""]
    );
    assert_eq!(
        messages("[spouts.\"a b\"]\ntype = \"random_sentences\"\n"),
        ["invalid component id \"a b\""]
    );
    assert_eq!(
        messages("[bolts.b]\ntype = \"split_words\"\ninputs = [\"b\"]\n"),
        [
            "cycle: \"b\" subscribes to itself",
            "topology has no spouts"
        ]
    );
    let settings = "[topology]\nname = \"\"\nworkers = 0\nackers = -1\nmessage_timeout_secs = 0\nmax_spout_pending = -5\n";
    assert_eq!(
        messages(&format!("{settings}{HEAD}tick_secs = -1.5\ncount = \"many\"\n")),
        [
            "topology name must not be empty",
            "\"workers\" must be at least 1, not 0",
            "\"ackers\" must be 0 or more, not -1",
            "\"message_timeout_secs\" must be a positive number of seconds up to 31536000, not 0",
            "\"max_spout_pending\" must be 0 or more, not -5",
            "spout \"s\": \"tick_secs\" must be a positive number of seconds up to 31536000, not -1.5",
            "spout \"s\": invalid type for \"count\": expected u64, found string \"many\"",
        ]
    );
    assert_eq!(
        messages("[topology]\nworkers = 99999999999999999999\n[spouts.s]\ntype = 5\ninputs = 3\n"),
        [
            "integer out of range for \"workers\"",
            "invalid type for \"type\": expected string, found integer",
            "invalid type for \"inputs\": expected array, found integer",
        ]
    );
    assert_eq!(
        messages("[spout.s]\ntype = \"random_sentences\"\n"),
        [
            "unknown key \"spout\" at the top level",
            "topology has no spouts"
        ]
    );
}

#[test]
fn every_cycle_is_reported_with_every_component_on_it() {
    let text = format!(
        "{HEAD}\
[bolts.a]
type = \"split_words\"
inputs = [\"s\", \"c\"]
[bolts.b]
type = \"split_words\"
inputs = [\"a\"]
[bolts.c]
type = \"split_words\"
inputs = [\"b\"]
[bolts.d]
type = \"split_words\"
inputs = [\"e\"]
[bolts.e]
type = \"split_words\"
inputs = [\"d\", \"s\"]
[bolts.f]
type = \"console\"
inputs = [\"a\", \"e\"]
"
    );
    assert_eq!(
        messages(&text),
        [
            "cycle through \"a\", \"b\" and \"c\"",
            "cycle through \"d\" and \"e\""
        ]
    );
}

#[test]
fn positions_count_characters_and_ignore_carriage_returns() {
    let text = "[spouts.s]\r\ntype = \"random_sentences\"\r\n[bolts.\"é\"]\r\ntype = \"console\"\r\n\tinputs = [\"ß\"]\r\n";
    let Err(d) = topo_dsl::load(text, &registry()) else {
        panic!("validated");
    };
    assert_eq!(
        d.render("t", text),
        "\
t:3:8: error: invalid component id \"é\"
  |
3 | [bolts.\"é\"]
  |        ^^^
  = hint: ids use ascii letters, digits, \"_\" and \"-\", and do not start with \"__\"

t:5:12: error: unknown input \"ß\"
  |
5 | \tinputs = [\"ß\"]
  | \t          ^^^

"
    );
    // An unquoted non-ascii key is a syntax error, reported once.
    assert_eq!(
        messages("[spouts.s]\ntype = \"random_sentences\"\n[bolts.é]\ninputs = [\"s\"]\ntype = \"console\"\n"),
        ["invalid toml: invalid unquoted key, expected letters, numbers, `-`, `_`"]
    );
}

#[test]
fn component_configs_are_checked_by_their_type() {
    let text = "\
[spouts.s]
type = \"random_sentences\"
seed = -3
[bolts.b]
type = \"split_words\"
foo = 1
inputs = [\"s\"]
[bolts.c]
type = \"console\"
prefix = { a = 1 }
inputs = [\"b\"]
";
    let Err(d) = topo_dsl::load(text, &registry()) else {
        panic!("validated");
    };
    let got: Vec<(usize, &str, Option<&str>)> = d
        .items
        .iter()
        .map(|d| {
            let line = d.span.map_or(0, |s| position(text, s.start).0);
            (line, d.message.as_str(), d.hint.as_deref())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                3,
                "spout \"s\": invalid value for \"seed\": expected u64, found integer `-3`",
                None
            ),
            (
                6,
                "bolt \"b\": unknown key \"foo\"",
                Some("known keys: keep")
            ),
            (
                10,
                "bolt \"c\": invalid type for \"prefix\": expected a string, found table",
                None
            ),
        ]
    );
}

#[test]
fn every_problem_in_one_config_is_reported_not_only_the_first() {
    let mut registry = Registry::new();
    topo_spouts::sequence::register(&mut registry);
    topo_bolts::console::register(&mut registry);
    let text =
        "[spouts.s]\ntype = \"sequence\"\ncont = 5\ncount = \"ten\"\nstart = -1\nbegin = 3\n\n\
                [bolts.c]\ntype = \"console\"\ninputs = [\"s\"]\n";
    let d = match topo_dsl::load(text, &registry) {
        Ok(_) => panic!("three mistakes in one config"),
        Err(d) => d,
    };
    let got: Vec<(usize, &str)> = d
        .items
        .iter()
        .map(|d| {
            (
                d.span.map_or(0, |s| position(text, s.start).0),
                d.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (3, "spout \"s\": unknown key \"cont\""),
            (
                4,
                "spout \"s\": invalid type for \"count\": expected u64, found string \"ten\""
            ),
            (6, "spout \"s\": unknown key \"begin\""),
        ],
        "{d}"
    );
}

#[test]
fn disable_loadaware_messaging_is_a_boolean_setting() {
    let text = format!("[topology]\ndisable_loadaware_messaging = \"yes\"\n{HEAD}");
    let Err(d) = topo_dsl::load(&text, &registry()) else {
        panic!("validated:\n{text}");
    };
    let at: Vec<(usize, usize, &str)> = d
        .items
        .iter()
        .map(|d| {
            let l = d.location(&text).expect("a location");
            (l.line, l.column, d.message.as_str())
        })
        .collect();
    assert_eq!(
        at,
        [(
            2,
            31,
            "invalid type for \"disable_loadaware_messaging\": expected boolean, found string"
        )]
    );
    assert_eq!(
        messages(&format!(
            "[topology]\ndisable_loadaware_mesaging = true\n{HEAD}"
        )),
        ["unknown key \"disable_loadaware_mesaging\" in [topology]"]
    );
    let on = topo_dsl::load(HEAD, &registry()).expect("valid");
    assert!(on.settings().load_aware, "load-aware by default");
    let text = format!("[topology]\ndisable_loadaware_messaging = true\n{HEAD}");
    let off = topo_dsl::load(&text, &registry()).expect("valid");
    assert!(!off.settings().load_aware);
    let built = Topology::builder("t")
        .disable_loadaware_messaging(true)
        .spout("s", "random_sentences")
        .build(&registry())
        .expect("valid");
    assert!(!built.settings().load_aware);
}

#[test]
fn topology_names_that_could_become_paths_are_refused_in_files_and_builders() {
    assert_eq!(
        messages(&format!("[topology]\nname = \"../../x\"\n{HEAD}")),
        ["invalid topology name \"../../x\": \".\" is not allowed"]
    );
    assert_eq!(
        messages(&format!("[topology]\nname = \"/etc/cron.d/x\"\n{HEAD}")),
        ["invalid topology name \"/etc/cron.d/x\": \"/\" is not allowed"]
    );
    let long = "n".repeat(65);
    assert_eq!(
        messages(&format!("[topology]\nname = \"{long}\"\n{HEAD}")),
        [format!(
            "invalid topology name \"{long}\": 65 bytes, at most 64"
        )]
    );
    let err = Topology::builder("../x")
        .spout("s", "random_sentences")
        .build(&registry())
        .expect_err("a path as a name");
    assert_eq!(
        err.items[0].message,
        "invalid topology name \"../x\": \".\" is not allowed"
    );
    assert_eq!(
        err.items[0].hint.as_deref(),
        Some("names use ascii letters, digits, \"_\" and \"-\", at most 64 characters")
    );
}
