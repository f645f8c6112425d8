//! The wall clock, in the units the tokens and the database use. Below everything else, so
//! that any module may read the time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, in Unix milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time as the user-credential rules read it (password age, locks, TOTP steps): the wall
/// clock, moved by an offset that tests advance to cross a rotation window or a lock without
/// waiting. Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        now().saturating_add(self.offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) `secs` into the future.
    pub fn advance(&self, secs: i64) {
        self.offset
            .fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }
}
