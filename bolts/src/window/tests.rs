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

/// A bolt counting per word in event-time windows of 2 s sliding by 0.5 s (panes of
/// 0.5 s), as task `index` of `tasks`.
fn counting_task(index: usize, tasks: usize) -> WindowAggregate {
    let c = config(
        "window = { length_secs = 2, slide_secs = 0.5 }\ntimestamp_field = \"ts\"\nkey = [\"word\"]\naggregates = [\"count() as n\"]",
    )
    .unwrap();
    let mut w = WindowAggregate::new(c);
    w.task_index = index;
    w.tasks = tasks;
    w
}

/// A word whose key group task `index` of `tasks` owns.
fn word_of(index: usize, tasks: usize) -> Value {
    let groups = topo_engine::state::key_group_range(index, tasks);
    (0..)
        .map(|i| Value::from(format!("w{i}").as_str()))
        .find(|v| groups.contains(&topo_engine::state::key_group_of([v])))
        .unwrap()
}

/// Gives `w` one tuple of `word` in each pane of `panes`.
fn fill(w: &mut WindowAggregate, word: &Value, panes: std::ops::Range<i64>) {
    for i in panes {
        let hash = w.hasher.hash([word]);
        w.panes.entry(i).or_default().groups.insert(Group {
            hash,
            key: Key([word.clone()].into_iter().collect()),
            acc: Acc::counted(1),
            held: Vec::new(),
        });
    }
}

#[test]
fn a_task_resumed_with_keys_of_tasks_that_fired_unequally_fires_each_window_once() {
    use topo_engine::state::{key_group_of, TaskState, TaskStateReader};
    // Two old tasks at the checkpoint: task 0 had fired the windows before 1.5 s
    // (watermark 3.5 s), task 1 those before 1 s (watermark 3 s).
    // `a` stays on task 0 of three, `b` goes to task 2, which has no old namesake.
    let (a, b) = (word_of(0, 3), word_of(2, 3));
    let mut old = [counting_task(0, 2), counting_task(1, 2)];
    fill(&mut old[0], &a, 3..7);
    (old[0].next, old[0].fired) = (Some(1500), 1500);
    old[0].watermarks.restore(&[], 3500);
    fill(&mut old[1], &b, 2..6);
    (old[1].next, old[1].fired) = (Some(1000), 1000);
    old[1].watermarks.restore(&[], 3000);
    let parts: Vec<TaskState> = old
        .iter()
        .map(|w| {
            let mut s = TaskState::default();
            w.snapshot_windows(&mut s).unwrap();
            s
        })
        .collect();
    let refs: Vec<&TaskState> = parts.iter().collect();

    // Resumed as one task: it starts at the earliest open window and the lowest
    // watermark, and remembers that `a`'s windows before 1.5 s were written.
    let mut one = counting_task(0, 1);
    one.restore_windows(&TaskStateReader::rescaled(&refs, 0, 1))
        .unwrap();
    assert_eq!((one.next, one.fired), (Some(1000), 1000));
    assert_eq!(one.watermarks.current(), 3000);
    assert_eq!(
        one.panes.keys().copied().collect::<Vec<_>>(),
        (2..7).collect::<Vec<_>>()
    );
    let key = |v: &Value| Key([v.clone()].into_iter().collect());
    assert!(one.fired_before_resume(&key(&a), 1000));
    assert!(!one.fired_before_resume(&key(&a), 1500));
    assert!(!one.fired_before_resume(&key(&b), 1000));
    assert_eq!(one.moved.get(key_group_of([&a])), (3500, 1500));
    assert_eq!((one.late_below, one.fired_below), (3500, 1500));

    // A rollback of that task before it caught up keeps what it remembers.
    let mut again = TaskState::default();
    one.snapshot_windows(&mut again).unwrap();
    let mut back = counting_task(0, 1);
    back.restore_windows(&TaskStateReader::rescaled(&[&again], 0, 1))
        .unwrap();
    assert!(back.fired_before_resume(&key(&a), 1000));
    assert!(!back.fired_before_resume(&key(&b), 1000));
    assert_eq!(back.moved.get(key_group_of([&a])), (3500, 1500));

    // Resumed on three tasks: each owns keys of one old task or two, and the task with
    // no old namesake still starts at its keys' earliest open window.
    for i in 0..3 {
        let mut t = counting_task(i, 3);
        t.restore_windows(&TaskStateReader::rescaled(&refs, i, 3))
            .unwrap();
        let owners: Vec<usize> = [0usize, 1]
            .into_iter()
            .filter(|o| {
                let (r, m) = (
                    topo_engine::state::key_group_range(*o, 2),
                    topo_engine::state::key_group_range(i, 3),
                );
                r.start < m.end && m.start < r.end
            })
            .collect();
        let want_next = if owners.contains(&1) { 1000 } else { 1500 };
        if i != 1 {
            assert_eq!(t.next, Some(want_next), "task {i}");
        }
        assert_eq!(t.fired, want_next, "task {i}");
    }
}
