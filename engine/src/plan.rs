//! The physical plan: every task of a topology, its id, and the worker that runs it.
//!
//! Task ids follow Storm: from 1, in component order (spouts first, then bolts, as in
//! [`Topology::components`]), each component's tasks consecutive; acker tasks come after
//! every component task. Tasks are spread over the workers round-robin in task-id order,
//! so each component's tasks land on different workers; acker `i` runs in worker
//! `i % workers`. The plan is a pure function of the topology: every process that plans
//! the same topology gets the same plan.

use serde::Serialize;
use topo_dsl::{ComponentIdx, Grouping, Topology};

use crate::tuple::TaskId;

/// What a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRole {
    /// Task `index` of the component at this index of [`Topology::components`].
    Component(ComponentIdx),
    /// An acker (a system task).
    Acker,
}

/// One task of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskSlot {
    /// Its id, unique in the topology.
    pub id: TaskId,
    /// What it runs.
    pub role: TaskRole,
    /// Its index among its component's tasks (or among the ackers), from 0.
    pub index: usize,
    /// The worker it runs in, `0..workers`.
    pub worker: usize,
}

/// Every task of a topology, placed in workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhysicalPlan {
    workers: usize,
    tasks: Vec<TaskSlot>,
    component_tasks: Vec<Vec<TaskId>>,
    ackers: Vec<TaskId>,
}

impl PhysicalPlan {
    /// Plans `topology` over its `workers` setting.
    pub fn new(topology: &Topology) -> Self {
        let settings = topology.settings();
        let workers = settings.workers.max(1);
        let mut tasks = Vec::with_capacity(topology.task_count() + settings.ackers);
        let mut component_tasks = Vec::with_capacity(topology.components().len());
        for (c, component) in topology.components().iter().enumerate() {
            let mut ids = Vec::with_capacity(component.parallelism);
            for index in 0..component.parallelism {
                let id = tasks.len() as TaskId + 1;
                tasks.push(TaskSlot {
                    id,
                    role: TaskRole::Component(c),
                    index,
                    worker: tasks.len() % workers,
                });
                ids.push(id);
            }
            component_tasks.push(ids);
        }
        let ackers = if settings.acking { settings.ackers } else { 0 };
        let mut acker_ids = Vec::with_capacity(ackers);
        for index in 0..ackers {
            let id = tasks.len() as TaskId + 1;
            tasks.push(TaskSlot {
                id,
                role: TaskRole::Acker,
                index,
                worker: index % workers,
            });
            acker_ids.push(id);
        }
        PhysicalPlan {
            workers,
            tasks,
            component_tasks,
            ackers: acker_ids,
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every task, by id (task `id` is at index `id - 1`).
    pub fn tasks(&self) -> &[TaskSlot] {
        &self.tasks
    }

    /// The task with id `id`.
    pub fn task(&self, id: TaskId) -> Option<&TaskSlot> {
        (id as usize).checked_sub(1).and_then(|i| self.tasks.get(i))
    }

    /// The task ids of component `c`.
    pub fn component_tasks(&self, c: ComponentIdx) -> &[TaskId] {
        self.component_tasks.get(c).map_or(&[], Vec::as_slice)
    }

    /// The task ids of every component, by component index.
    pub fn all_component_tasks(&self) -> &[Vec<TaskId>] {
        &self.component_tasks
    }

    /// The acker task ids (empty with acking off).
    pub fn ackers(&self) -> &[TaskId] {
        &self.ackers
    }

    /// The worker task `id` runs in.
    pub fn worker_of(&self, id: TaskId) -> Option<usize> {
        self.task(id).map(|t| t.worker)
    }

    /// True when some `shuffle` or `none` subscription of `topology` (this plan's) has
    /// tasks in more than one worker: only such a shuffle reads loads, so only then are
    /// they sampled and published.
    pub(crate) fn shuffles_across_workers(&self, topology: &Topology) -> bool {
        topology.components().iter().enumerate().any(|(c, comp)| {
            let shuffled = comp
                .inputs
                .iter()
                .any(|i| matches!(i.grouping, Grouping::Shuffle | Grouping::None));
            let mut workers = self
                .component_tasks(c)
                .iter()
                .filter_map(|&t| self.worker_of(t));
            let first = workers.next();
            shuffled && workers.any(|w| Some(w) != first)
        })
    }

    /// The tasks of worker `w`.
    pub fn worker_tasks(&self, w: usize) -> impl Iterator<Item = &TaskSlot> + '_ {
        self.tasks.iter().filter(move |t| t.worker == w)
    }

    /// The acker that tracks the tree of `root` (a tuple tree's random root id).
    pub fn acker_for(&self, root: u64) -> Option<TaskId> {
        match self.ackers.len() {
            0 => None,
            n => Some(self.ackers[(root % n as u64) as usize]),
        }
    }
}

impl PhysicalPlan {
    /// The plan as text, one line per worker, naming each task's component:
    /// `worker 0: 1 sentences[0], 3 split[1], 7 __acker[0]`.
    pub fn render(&self, topology: &Topology) -> String {
        let mut out = String::new();
        for w in 0..self.workers {
            let names: Vec<String> = self
                .worker_tasks(w)
                .map(|t| match t.role {
                    TaskRole::Component(c) => {
                        let id = topology.components().get(c).map_or("?", |c| c.id.as_str());
                        format!("{} {id}[{}]", t.id, t.index)
                    }
                    TaskRole::Acker => format!("{} __acker[{}]", t.id, t.index),
                })
                .collect();
            out.push_str(&format!("worker {w}: {}\n", names.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topo_dsl::{Catalog, ComponentType, ConfigIssue, Kind, StreamDecl};

    struct Any(Kind);
    impl ComponentType for Any {
        fn kind(&self) -> Kind {
            self.0
        }
        fn description(&self) -> &str {
            ""
        }
        fn configure(&self, _: &toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>> {
            Ok(vec![StreamDecl::default_stream(["x"])])
        }
    }
    struct Types;
    impl Catalog for Types {
        fn component_type(&self, _: Kind, name: &str) -> Option<&dyn ComponentType> {
            match name {
                "source" => Some(&Any(Kind::Spout)),
                _ => Some(&Any(Kind::Bolt)),
            }
        }
        fn type_names(&self) -> Vec<String> {
            vec!["source".into(), "any".into()]
        }
    }

    #[test]
    fn ids_follow_component_order_and_tasks_spread_round_robin() {
        let t = Topology::builder("t")
            .workers(3)
            .spout("s", "source")
            .parallelism(2)
            .bolt("b", "any")
            .parallelism(3)
            .shuffle("s")
            .build(&Types)
            .unwrap();
        let plan = PhysicalPlan::new(&t);
        assert_eq!(plan.component_tasks(0), [1, 2]);
        assert_eq!(plan.component_tasks(1), [3, 4, 5]);
        assert_eq!(plan.ackers(), [6, 7, 8], "one acker per worker");
        let workers: Vec<usize> = plan.tasks().iter().map(|t| t.worker).collect();
        assert_eq!(workers, [0, 1, 2, 0, 1, 0, 1, 2]);
        assert_eq!(plan, PhysicalPlan::new(&t), "deterministic");
        assert_eq!(plan.acker_for(7), Some(7), "7 % 3 = 1: the second acker");
    }

    #[test]
    fn loads_matter_only_for_a_shuffle_whose_tasks_span_workers() {
        let with = |workers: i64, parallelism: i64, fields: bool| {
            let b = Topology::builder("t")
                .workers(workers)
                .spout("s", "source")
                .parallelism(2)
                .bolt("b", "any")
                .parallelism(parallelism);
            let b = if fields {
                b.fields("s", ["x"])
            } else {
                b.shuffle("s")
            };
            let t = b.build(&Types).unwrap();
            PhysicalPlan::new(&t).shuffles_across_workers(&t)
        };
        assert!(with(2, 2, false), "a shuffle over both workers");
        assert!(!with(2, 1, false), "a shuffle to one task");
        assert!(!with(1, 2, false), "one worker");
        assert!(!with(2, 2, true), "fields grouping only");
    }
}
