use super::*;
use topo_engine::window::WindowSpec;

fn config(text: &str) -> Result<Config, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    topo_dsl::parse_config::<Config>(&table).map_err(|e| e[0].message.clone())
}

#[test]
fn a_window_is_by_time_or_by_count_and_a_missing_slide_tumbles() {
    let c =
        config("window = { length_secs = 60, slide_secs = 1 }\naggregates = [\"count() as n\"]")
            .unwrap();
    assert_eq!(
        c.window,
        WindowSpec::sliding(Length::Millis(60_000), Length::Millis(1000))
    );
    let c = config("window = { length_count = 100 }\naggregates = [\"count() as n\"]").unwrap();
    assert_eq!(c.window, WindowSpec::tumbling(Length::Count(100)));
    assert_eq!(
        config("window = { length_secs = 60, slide_count = 1 }\naggregates = [\"count() as n\"]").unwrap_err(),
        "`window` is by time (`length_secs`, `slide_secs`) or by count (`length_count`, `slide_count`), not both"
    );
    assert_eq!(
        config("window = { length_secs = 0.0005 }\naggregates = [\"count() as n\"]").unwrap_err(),
        "`length_secs` must be a positive whole number of milliseconds; got 0.0005"
    );
}

#[test]
fn aggregates_parse_with_expression_arguments() {
    let a = Aggregate::try_from("sum(bytes * 8) as bits".to_string()).unwrap();
    assert_eq!((a.name.as_str(), a.function), ("bits", Function::Sum));
    assert_eq!(a.arg.unwrap().fields(), ["bytes"]);
    assert_eq!(
        Aggregate::try_from("median(x) as m".to_string()).unwrap_err(),
        "`median(x) as m`: expected `FUNCTION(ARG) as NAME`, FUNCTION one of count, sum, min, max, avg"
    );
    assert_eq!(
        Aggregate::try_from("sum() as s".to_string()).unwrap_err(),
        "`sum() as s`: `sum` needs an argument"
    );
}

#[test]
fn subtracting_a_pane_undoes_adding_it() {
    let aggs: Vec<Aggregate> = ["count() as n", "sum(x) as s", "avg(x) as a"]
        .into_iter()
        .map(|s| Aggregate::try_from(s.to_string()).unwrap())
        .collect();
    let mut w = Acc::new(&aggs, false);
    let mut p1 = Acc::new(&aggs, false);
    let mut p2 = Acc::new(&aggs, false);
    p1.add(&[Value::Null, Value::Int(5), Value::Int(5)])
        .unwrap();
    p2.add(&[Value::Null, Value::Float(0.1), Value::Float(0.1)])
        .unwrap();
    p2.add(&[Value::Null, Value::Int(1), Value::Int(1)])
        .unwrap();
    w.merge(&p1);
    w.merge(&p2);
    w.subtract(&p2);
    let mut out = Values::new();
    w.push_results(&aggs, &mut out);
    assert_eq!(
        out.as_slice(),
        [Value::Int(1), Value::Int(5), Value::Float(5.0)]
    );
}
