//! The README's topology file is valid and describes wordcount (its Rust examples run as
//! doctests of the `topo` crate).

const README: &str = include_str!("../README.md");

/// Every fenced block of `lang` in the README.
fn blocks(lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    README
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split("```").next().map(str::to_string))
        .collect()
}

#[test]
fn the_readme_topology_file_is_valid() {
    let registry = topo::default_registry();
    let files = blocks("toml");
    let full = files
        .iter()
        .find(|b| b.contains("[topology]"))
        .expect("the README has a whole topology file");
    let t =
        topo_dsl::load(full, &registry).unwrap_or_else(|d| panic!("{}", d.render("README", full)));
    assert_eq!(t.name(), "wordcount");
    assert_eq!(
        (t.components().len(), t.task_count(), t.edge_count()),
        (4, 6, 3)
    );
}
