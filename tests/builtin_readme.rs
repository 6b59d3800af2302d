//! Every component table in the README's "Built-in components" section is a valid config
//! of its type, and every built-in type has one.

use topo_dsl::Catalog;

const README: &str = include_str!("../README.md");

#[test]
fn every_builtin_snippet_configures() {
    let section = README
        .split("## Built-in components")
        .nth(1)
        .expect("the README has the section");
    let registry = topo::default_registry();
    let mut checked = Vec::new();
    for block in section.split("```toml\n").skip(1) {
        let text = block.split("```").next().expect("closed block");
        let doc: toml::Table = text.parse().expect("valid toml");
        for (section, kind) in [
            ("spouts", topo_dsl::Kind::Spout),
            ("bolts", topo_dsl::Kind::Bolt),
        ] {
            let Some(tables) = doc.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for (id, body) in tables {
                let mut config = body.as_table().expect("a table").clone();
                let type_name = config
                    .remove("type")
                    .and_then(|t| t.as_str().map(str::to_string))
                    .expect("a type");
                for engine_key in ["parallelism", "inputs", "tick_secs"] {
                    config.remove(engine_key);
                }
                let ty = registry
                    .component_type(kind, &type_name)
                    .expect("registered");
                assert_eq!(ty.kind(), kind, "{id}");
                if let Err(issues) = ty.configure(&config) {
                    panic!("{id} ({type_name}): {issues:?}");
                }
                checked.push((type_name, kind));
            }
        }
    }
    checked.sort();
    checked.dedup();
    // Types are keyed by name and kind: `redis_stream` needs a spout and a sink snippet.
    let all: Vec<(String, topo_dsl::Kind)> = registry
        .entries()
        .map(|e| (e.name().to_string(), topo_dsl::ComponentType::kind(e)))
        .collect();
    assert_eq!(checked, all, "every built-in type has a snippet");
}
