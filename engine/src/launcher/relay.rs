//! Taps of tasks in worker processes, relayed over their control channels: the
//! supervising process (`topo run` with `workers > 1`, the cluster coordinator) asks
//! every worker to tap a component (`Tap`), each worker sends a sample of what its tasks
//! emit back (`Tapped`, at most `per_sec` records a second), and the supervisor hands the
//! records to the reader's [`Tap`]; dropping it sends `Untap`.
//!
//! A [`Relay`] holds no processes: the driver that talks to the workers takes what to
//! send ([`Relay::take_outbox`], to every worker; [`Relay::active`], to a worker that
//! starts running later) and passes on what they sent ([`Relay::on_message`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::worker::{FromWorker, ToWorker};
use crate::tap::{Tap, TapRecord, TAP_CAPACITY};

/// The taps a supervising process relays to its workers.
#[derive(Debug, Default)]
pub struct Relay {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Attached taps: the request the workers were sent, and where records go.
    open: BTreeMap<u64, (ToWorker, Sender<TapRecord>)>,
    /// Messages for every worker, not yet taken by the driver.
    outbox: Vec<ToWorker>,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taps `component` (only `stream` when given) in every worker, each sending at most
    /// `per_sec` records a second, until the returned [`Tap`] is dropped. The caller has
    /// checked that the component exists.
    pub fn attach(self: &Arc<Self>, component: &str, stream: Option<&str>, per_sec: f64) -> Tap {
        let (tx, rx) = crossbeam_channel::bounded(TAP_CAPACITY);
        let mut inner = self.lock();
        inner.next += 1;
        let tap = inner.next;
        let request = ToWorker::Tap {
            tap,
            component: component.to_string(),
            stream: stream.map(str::to_string),
            per_sec,
        };
        inner.outbox.push(request.clone());
        inner.open.insert(tap, (request, tx));
        drop(inner);
        let relay = Arc::clone(self);
        Tap::relayed(rx, move || {
            let mut inner = relay.lock();
            if inner.open.remove(&tap).is_some() {
                inner.outbox.push(ToWorker::Untap { tap });
            }
        })
    }

    /// The messages to send every worker since the last call.
    pub fn take_outbox(&self) -> Vec<ToWorker> {
        std::mem::take(&mut self.lock().outbox)
    }

    /// The requests of the taps attached now: what a worker that starts running (a new
    /// or restarted one) is sent.
    pub fn active(&self) -> Vec<ToWorker> {
        self.lock().open.values().map(|(r, _)| r.clone()).collect()
    }

    /// Takes a worker's `Tapped` or `TapFailed` (`None`: handled here); any other message
    /// is given back for the driver.
    pub fn on_message(&self, worker: usize, msg: FromWorker) -> Option<FromWorker> {
        match msg {
            FromWorker::Tapped { tap, record } => {
                if let Some((_, tx)) = self.lock().open.get(&tap) {
                    // A full channel: the reader is slow, it gets a sample.
                    let _ = tx.try_send(record);
                }
                None
            }
            FromWorker::TapFailed { tap, message } => {
                tracing::warn!(worker, tap, "A worker cannot tap: {message}");
                None
            }
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(word: &str) -> TapRecord {
        let mut fields = serde_json::Map::new();
        fields.insert("word".into(), word.into());
        TapRecord {
            component: "split".into(),
            stream: "default".into(),
            task: 2,
            fields,
            anchors: BTreeMap::new(),
        }
    }

    #[test]
    fn a_relayed_tap_asks_every_worker_gets_their_records_and_untaps_when_dropped() {
        let relay = Arc::new(Relay::default());
        let tap = relay.attach("split", None, 10.0);
        let ask = relay.take_outbox();
        assert_eq!(
            ask,
            vec![ToWorker::Tap {
                tap: 1,
                component: "split".into(),
                stream: None,
                per_sec: 10.0
            }]
        );
        assert_eq!(relay.active(), ask, "a worker starting later is asked too");
        let running = relay.on_message(0, FromWorker::Running);
        assert_eq!(running, Some(FromWorker::Running), "not a tap message");
        for (w, word) in [(0, "cow"), (1, "moon")] {
            let msg = FromWorker::Tapped {
                tap: 1,
                record: record(word),
            };
            assert_eq!(relay.on_message(w, msg), None);
        }
        let got: Vec<TapRecord> = tap.records().try_iter().collect();
        assert_eq!(got, vec![record("cow"), record("moon")]);
        drop(tap);
        assert_eq!(relay.take_outbox(), vec![ToWorker::Untap { tap: 1 }]);
        assert!(relay.active().is_empty());
        // A record still on its way after the untap goes nowhere.
        let late = FromWorker::Tapped {
            tap: 1,
            record: record("late"),
        };
        assert_eq!(relay.on_message(0, late), None);
    }
}
