//! Emitting against the declared outputs: an undeclared stream or a wrong number of
//! values panics with a message that says what is wrong; the engine fails the input and
//! goes on.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use common::{numbers, run, Log};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::{Bolt, BoltOutput, Registry, Result, Tuple};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

type Messages = Arc<Mutex<Vec<String>>>;

/// Tries three bad emits on the first input, recording each panic's message; then emits
/// wrongly without catching, so the engine sees the panic.
struct Careless(Messages);

impl Bolt for Careless {
    fn execute(&mut self, _input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let mut messages = self.0.lock().unwrap();
        if messages.is_empty() {
            let mut attempt = |f: &mut dyn FnMut(&mut BoltOutput<'_>)| {
                let p = catch_unwind(AssertUnwindSafe(|| f(out))).unwrap_err();
                let text = p.downcast_ref::<String>().cloned().unwrap_or_default();
                messages.push(text);
            };
            attempt(&mut |out| {
                out.emit_to("nope", [1]);
            });
            attempt(&mut |out| out.emit([1, 2, 3]));
            attempt(&mut |out| out.emit_direct(1, "default", None, [1, 2]));
        }
        drop(messages);
        out.emit([1]);
        Ok(())
    }
}

#[test]
fn bad_emits_panic_with_a_clear_message_and_fail_the_input() {
    let log = Log::default();
    let messages = Messages::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    let m = Arc::clone(&messages);
    r.bolt(
        "careless",
        "emits wrongly",
        |_: &NoConfig| vec![StreamDecl::default_stream(["a", "b"])],
        move |_| Ok(Careless(Arc::clone(&m))),
    );
    let t = Topology::builder("contract")
        .spout("numbers", "numbers")
        .set("count", 3)
        .set("replay", false)
        .bolt("careless", "careless")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    assert_eq!(
        *messages.lock().unwrap(),
        [
            "`careless` emitted on stream `nope`, which it does not declare (declared: default)",
            "`careless` emitted 3 value(s) on stream `default`, which declares 2 field(s): a, b",
            "`careless` called emit_direct to task 1 on stream `default`, which is not \
             declared direct",
        ]
    );
    let careless = summary.counts("careless");
    assert_eq!((careless.executed, careless.failed_by.panic), (3, 3));
    assert_eq!(log.lock().unwrap().failed.len(), 3);
}
