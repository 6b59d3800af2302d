//! A bolt task's inbox of batches from other workers: taken, decoded and granted back on
//! the task's own thread, so the tuples are built on the core that executes them.
//!
//! Each batch taken grants its sender one more batch for this task (the windows of
//! `bridge::outbound`), a few at a time ([`GRANT_EVERY`]) and all that is owed before
//! the task waits for input. A payload that does not decode is dropped, counted and
//! logged (rate-limited); it is granted back all the same, since its sender spent a
//! batch of the window on it.
//!
//! A batch (up to 2,048 tuples) is decoded and handed to the task [`CHUNK`] tuples at a
//! time, so that each chunk is executed while it is still in the core's L1 cache rather
//! than written out as a whole batch first; the task executes every chunk of a batch
//! before it takes anything else, and flushes its acks once per batch. A batch that turns out damaged part-way is
//! dropped from the chunk that holds the damage on: the chunks before it were executed,
//! the rest never is (with acking on, their trees time out and are replayed).

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};

use crate::metrics::worth_logging;
use crate::route::{GrantBook, Inbound, RemoteBatch};
use crate::tuple::{TaskId, Tuple};
use crate::wire::{self, BatchCursor, Begun, WireError};

/// Batches granted back to a worker in one `Control` frame (at most: all that is owed is
/// granted whenever the task goes idle).
pub(crate) const GRANT_EVERY: u32 = 4;

/// Tuples of a remote batch decoded and executed at a time: 128 tuples are 16 KiB of
/// `Tuple`s, which stay in L1 between their decoding and their execution.
pub(crate) const CHUNK: usize = 128;

/// A batch being decoded a chunk at a time.
struct Pending {
    payload: Bytes,
    from: u32,
    cursor: BatchCursor,
}

/// What is owed to one sending worker.
#[derive(Clone, Copy, Default)]
struct Owed {
    /// The connection the batches came on.
    epoch: u32,
    batches: u32,
}

/// A bolt task's remote inbox and what it owes its senders.
pub(crate) struct RemoteIn {
    pub(crate) rx: Receiver<RemoteBatch>,
    decoder: wire::DataDecoder,
    task: TaskId,
    component: String,
    /// Worker -> batches taken and not yet granted back.
    owed: Vec<Owed>,
    /// Some batch's book, to pay what is owed when idle.
    book: Option<Arc<dyn GrantBook>>,
    bad: u64,
    /// The batch whose next chunk comes before anything else in the inbox.
    pending: Option<Pending>,
}

impl RemoteIn {
    pub(crate) fn new(
        rx: Receiver<RemoteBatch>,
        decoder: wire::DataDecoder,
        task: TaskId,
        component: String,
    ) -> RemoteIn {
        RemoteIn {
            rx,
            decoder,
            task,
            component,
            owed: Vec::new(),
            book: None,
            bad: 0,
            pending: None,
        }
    }

    /// The next remote message, if one waits (the next chunk of a batch first): `Ok(None)`
    /// when one was taken but carried nothing to execute (it did not decode).
    #[inline]
    pub(crate) fn try_take(
        &mut self,
        spare: impl FnOnce() -> Vec<Tuple>,
    ) -> Result<Option<Inbound>, TryRecvError> {
        if self.pending.is_some() {
            return Ok(self.next_chunk(spare));
        }
        self.rx.try_recv().map(|b| self.take(b, spare))
    }

    /// Starts on a message taken from the inbox: a batch's first chunk is decoded into a
    /// vector from `spare` (a recycled one holds a whole batch, so it is kept for reuse
    /// again after execution), and its sender is owed a grant.
    pub(crate) fn take(
        &mut self,
        b: RemoteBatch,
        spare: impl FnOnce() -> Vec<Tuple>,
    ) -> Option<Inbound> {
        let begun = self.decoder.begin(&b.payload);
        // Ends of streams and barriers spend no window; anything else (a batch, or what
        // claimed to be one) did.
        if !matches!(
            begun,
            Ok(Begun::Other(
                Inbound::Eos(_) | Inbound::Wake | Inbound::Barrier { .. }
            ))
        ) {
            self.owe(&b);
        }
        match begun {
            Ok(Begun::Batch(cursor)) => {
                self.pending = Some(Pending {
                    payload: b.payload,
                    from: b.from,
                    cursor,
                });
                self.next_chunk(spare)
            }
            Ok(Begun::Other(m)) => Some(m),
            Err(error) => {
                self.dropped(b.from, &error);
                None
            }
        }
    }

    /// Whether a batch was taken and not all of it decoded yet.
    #[inline]
    pub(crate) fn mid_batch(&self) -> bool {
        self.pending.is_some()
    }

    /// The next chunk of the pending batch, as a batch; `None` if it does not decode
    /// (the rest of the batch is dropped) or no batch is pending.
    #[inline]
    pub(crate) fn next_chunk(&mut self, spare: impl FnOnce() -> Vec<Tuple>) -> Option<Inbound> {
        let p = self.pending.as_mut()?;
        let mut tuples = spare();
        match self
            .decoder
            .decode_some(&p.payload, &mut p.cursor, &mut tuples, CHUNK)
        {
            Ok(done) => {
                if done {
                    self.pending = None;
                }
                Some(Inbound::Batch(tuples))
            }
            Err(error) => {
                let from = p.from;
                self.pending = None;
                self.dropped(from, &error);
                None
            }
        }
    }

    #[cold]
    fn dropped(&mut self, peer: u32, error: &WireError) {
        self.bad += 1;
        if worth_logging(self.bad) {
            tracing::warn!(
                component = %self.component,
                task = self.task,
                peer,
                %error,
                count = self.bad,
                "Dropped a message that does not decode."
            );
        }
    }

    fn owe(&mut self, b: &RemoteBatch) {
        let w = b.from as usize;
        let current = b.book.epoch(b.from);
        if b.epoch != current {
            // Came on a connection that is gone: the sender's windows started over.
            return;
        }
        if self.owed.len() <= w {
            self.owed.resize(w + 1, Owed::default());
        }
        let o = &mut self.owed[w];
        if o.epoch != current {
            *o = Owed {
                epoch: current,
                batches: 0,
            };
        }
        o.batches += 1;
        if o.batches >= GRANT_EVERY {
            let n = std::mem::take(&mut o.batches);
            b.book.grant(b.from, self.task, n);
        }
        if self.book.is_none() {
            self.book = Some(Arc::clone(&b.book));
        }
    }

    /// Grants back every batch owed (before the task waits).
    pub(crate) fn pay_all(&mut self) {
        let Some(book) = &self.book else { return };
        for (w, o) in self.owed.iter_mut().enumerate() {
            if o.batches > 0 {
                let n = std::mem::take(&mut o.batches);
                if book.epoch(w as u32) == o.epoch {
                    book.grant(w as u32, self.task, n);
                }
            }
        }
    }

    /// Batches that did not decode so far.
    #[cfg(test)]
    pub(crate) fn bad(&self) -> u64 {
        self.bad
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::tuple::{StreamInfo, Tuple};

    /// Records grants; worker 1's connection epoch is settable.
    #[derive(Default)]
    struct Book {
        epoch: AtomicU32,
        grants: Mutex<Vec<(u32, TaskId, u32)>>,
    }

    impl GrantBook for Book {
        fn epoch(&self, _worker: u32) -> u32 {
            self.epoch.load(Ordering::Acquire)
        }
        fn grant(&self, worker: u32, task: TaskId, batches: u32) {
            self.grants.lock().unwrap().push((worker, task, batches));
        }
    }

    fn inbox() -> (
        crossbeam_channel::Sender<RemoteBatch>,
        RemoteIn,
        &'static StreamInfo,
    ) {
        let info = StreamInfo::intern("words", "default", &["word".to_string()]);
        let (tx, rx) = crossbeam_channel::unbounded();
        let decoder = wire::DataDecoder::for_streams(&[info]);
        (tx, RemoteIn::new(rx, decoder, 5, "count".into()), info)
    }

    fn batch(book: &Arc<Book>, payload: bytes::Bytes) -> RemoteBatch {
        RemoteBatch {
            from: 1,
            epoch: book.epoch(1),
            payload,
            book: Arc::clone(book) as Arc<dyn GrantBook>,
        }
    }

    #[test]
    fn batches_decode_on_the_taking_thread_and_are_granted_a_few_at_a_time() {
        let (tx, mut inbox, info) = inbox();
        let book = Arc::new(Book::default());
        let t = Tuple::new(info, 3, crate::values!["hello"]);
        let payload = wire::encode_data(&Inbound::Batch(vec![t])).unwrap();
        for _ in 0..GRANT_EVERY + 1 {
            tx.send(batch(&book, payload.clone())).unwrap();
        }
        tx.send(batch(&book, wire::encode_data(&Inbound::Eos(3)).unwrap()))
            .unwrap();
        let mut words = Vec::new();
        while let Ok(m) = inbox.try_take(Vec::new) {
            match m {
                Some(Inbound::Batch(b)) => {
                    words.extend(b.iter().map(|t| t.values()[0].as_str().unwrap().to_owned()))
                }
                Some(Inbound::Eos(up)) => assert_eq!(up, 3),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(words.len(), GRANT_EVERY as usize + 1);
        assert!(words.iter().all(|w| w == "hello"));
        assert_eq!(*book.grants.lock().unwrap(), [(1, 5, GRANT_EVERY)]);
        // The end of stream spent no window: one batch is left to grant when idle.
        inbox.pay_all();
        assert_eq!(
            *book.grants.lock().unwrap(),
            [(1, 5, GRANT_EVERY), (1, 5, 1)]
        );
        inbox.pay_all();
        assert_eq!(book.grants.lock().unwrap().len(), 2, "paid once");
    }

    #[test]
    fn a_batch_comes_out_a_chunk_at_a_time_and_damage_drops_the_rest_of_it() {
        let (tx, mut inbox, info) = inbox();
        let book = Arc::new(Book::default());
        let n = 2 * CHUNK + 5;
        let word = |i: usize| format!("w{i}");
        let tuples: Vec<Tuple> = (0..n)
            .map(|i| Tuple::new(info, 3, [crate::Value::from(word(i).as_str())]))
            .collect();
        let payload = wire::encode_data(&Inbound::Batch(tuples)).unwrap();
        tx.send(batch(&book, payload.clone())).unwrap();
        // The same batch cut short: its last chunk does not decode.
        tx.send(batch(&book, payload.slice(..payload.len() - 1)))
            .unwrap();
        let mut sizes = Vec::new();
        let mut words = Vec::new();
        while let Ok(m) = inbox.try_take(Vec::new) {
            match m {
                Some(Inbound::Batch(b)) => {
                    sizes.push(b.len());
                    words.extend(b.iter().map(|t| t.values()[0].as_str().unwrap().to_owned()));
                }
                None => sizes.push(0),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 5, CHUNK, CHUNK, 0]);
        let want: Vec<String> = (0..n).chain(0..2 * CHUNK).map(word).collect();
        assert_eq!(words, want);
        assert_eq!(inbox.bad(), 1);
        // Each batch spent a window once, however many chunks it made.
        inbox.pay_all();
        assert_eq!(*book.grants.lock().unwrap(), [(1, 5, 2)]);
    }

    #[test]
    fn a_payload_that_does_not_decode_is_counted_dropped_and_granted_back() {
        let (tx, mut inbox, _) = inbox();
        let book = Arc::new(Book::default());
        tx.send(batch(&book, bytes::Bytes::from_static(b"\xffnot a batch")))
            .unwrap();
        assert!(matches!(inbox.try_take(Vec::new), Ok(None)));
        assert_eq!(inbox.bad(), 1);
        inbox.pay_all();
        assert_eq!(*book.grants.lock().unwrap(), [(1, 5, 1)]);
    }

    #[test]
    fn nothing_taken_from_a_lost_connection_is_granted() {
        let (tx, mut inbox, info) = inbox();
        let book = Arc::new(Book::default());
        let t = Tuple::new(info, 3, crate::values!["x"]);
        let payload = wire::encode_data(&Inbound::Batch(vec![t])).unwrap();
        // One batch taken and owed, one still waiting, then the connection is lost.
        tx.send(batch(&book, payload.clone())).unwrap();
        tx.send(batch(&book, payload.clone())).unwrap();
        assert!(matches!(
            inbox.try_take(Vec::new),
            Ok(Some(Inbound::Batch(_)))
        ));
        book.epoch.fetch_add(1, Ordering::AcqRel);
        assert!(matches!(
            inbox.try_take(Vec::new),
            Ok(Some(Inbound::Batch(_)))
        ));
        inbox.pay_all();
        assert!(book.grants.lock().unwrap().is_empty());
        // The new connection's batches are granted again.
        tx.send(batch(&book, payload)).unwrap();
        assert!(matches!(
            inbox.try_take(Vec::new),
            Ok(Some(Inbound::Batch(_)))
        ));
        inbox.pay_all();
        assert_eq!(*book.grants.lock().unwrap(), [(1, 5, 1)]);
    }
}
