//! Pre-authentication slots: how many accepted connections may be in their handshake,
//! in all and per source address, and rate-limited warnings for the ones refused.
//!
//! A peer that connects and stays silent holds a slot until the handshake timeout. With
//! one global cap, a flood of silent sockets renewed faster than the timeout locks every
//! legitimate peer out; with a cap per source address as well, one address can hold only
//! its share, and peers from other addresses (a restarted worker, a supervisor, a
//! client) still find free slots. Both the worker transport and the cluster's control
//! listener take their slots here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    /// Every slot is taken.
    #[error("too many connections in their handshake")]
    Full,
    /// Its source address holds its share of the slots already.
    #[error("too many connections from this address in their handshake")]
    AddressFull,
}

/// How often a refusal is logged at most: one line per interval, the next one says how
/// many were not logged meanwhile.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The slots of one listener. Shared by its accept loop and the handshake tasks.
#[derive(Debug)]
pub struct HandshakeSlots {
    total: usize,
    per_address: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    by_address: HashMap<IpAddr, usize>,
    last_logged: Option<Instant>,
    not_logged: u64,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<HandshakeSlots>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.in_use = s.in_use.saturating_sub(1);
        if let Some(n) = s.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                s.by_address.remove(&self.address);
            }
        }
    }
}

impl HandshakeSlots {
    /// `total` slots, at most `per_address` of them for one source address (both at
    /// least 1).
    pub fn new(total: usize, per_address: usize) -> Arc<HandshakeSlots> {
        Arc::new(HandshakeSlots {
            total: total.max(1),
            per_address: per_address.clamp(1, total.max(1)),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `address`, or why there is none.
    pub fn try_take(self: &Arc<Self>, address: IpAddr) -> Result<Slot, NoSlot> {
        let mut s = self.lock();
        if s.in_use >= self.total {
            return Err(NoSlot::Full);
        }
        let held = s.by_address.entry(address).or_insert(0);
        if *held >= self.per_address {
            return Err(NoSlot::AddressFull);
        }
        *held += 1;
        s.in_use += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            address,
        })
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    /// Whether to log this refusal: `Some(n)` at most once per [`REFUSAL_LOG_INTERVAL`],
    /// with `n` the refusals not logged since the last line; `None` otherwise.
    pub fn log_refusal(&self) -> Option<u64> {
        let mut s = self.lock();
        let now = Instant::now();
        match s.last_logged {
            Some(at) if now.duration_since(at) < REFUSAL_LOG_INTERVAL => {
                s.not_logged += 1;
                None
            }
            _ => {
                s.last_logged = Some(now);
                Some(std::mem::take(&mut s.not_logged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_share_and_others_the_rest() {
        let slots = HandshakeSlots::new(4, 2);
        let flood: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.1".parse().unwrap();
        let a = slots.try_take(flood).unwrap();
        let _b = slots.try_take(flood).unwrap();
        assert_eq!(slots.try_take(flood).unwrap_err(), NoSlot::AddressFull);
        let _c = slots.try_take(other).unwrap();
        let _d = slots.try_take(other).unwrap();
        assert_eq!(slots.try_take(other).unwrap_err(), NoSlot::Full);
        drop(a);
        assert_eq!(slots.in_use(), 3);
        let _e = slots.try_take(flood).unwrap();
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_interval_with_the_count_skipped() {
        let slots = HandshakeSlots::new(1, 1);
        assert_eq!(slots.log_refusal(), Some(0));
        for _ in 0..999 {
            assert_eq!(slots.log_refusal(), None);
        }
        slots.lock().last_logged = Some(Instant::now() - REFUSAL_LOG_INTERVAL);
        assert_eq!(slots.log_refusal(), Some(999));
    }
}
