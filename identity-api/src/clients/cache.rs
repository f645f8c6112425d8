//! The client rows an instance read lately ([`ClientCache`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::storage::ClientRow;

/// Client rows read recently, so that most issues skip the read of their client. Only a
/// success is answered from here; every refusal is decided on a fresh read, so that an unknown
/// id and a wrong secret still cost the same, a new secret (after `rotate-secret`) works at
/// once, and so does a grant added by `client update`. A stale row can authenticate but not
/// issue: the write that stores the family checks, in the same statement, that the client is
/// still enabled, still accepts the secret it authenticated by (as its current one, or as the
/// previous one within the overlap, at the time) and still has the scopes, audiences,
/// grant types and subject policy it was judged by (`Db::create_family`); an issue it refuses
/// is judged again on a fresh read.
/// So a rotation (with or without an overlap, or an overlap's end), an update and a disable act
/// at once on every instance, and so does an enable (a disabled client is never cached).
#[derive(Debug, Default)]
pub struct ClientCache {
    rows: RwLock<HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    row: Arc<ClientRow>,
    read_at: i64,
}

impl ClientCache {
    /// Seconds a row is used for. Every change an operator can make is checked by the write
    /// (above), so this bounds only how long a row is kept without being read again.
    pub const TTL_SECS: i64 = 10;
    /// Rows held at most; emptied when full. One per client that authenticated lately.
    pub const CAPACITY: usize = 4096;

    pub fn get(&self, client_id: &str, now: i64) -> Option<Arc<ClientRow>> {
        let rows = self.rows.read().ok()?;
        let cached = rows.get(client_id)?;
        (now.saturating_sub(cached.read_at) < Self::TTL_SECS).then(|| Arc::clone(&cached.row))
    }

    pub fn insert(&self, row: Arc<ClientRow>, now: i64) {
        let Ok(mut rows) = self.rows.write() else {
            return;
        };
        if rows.len() >= Self::CAPACITY {
            rows.clear();
        }
        rows.insert(row.client_id.clone(), Cached { row, read_at: now });
    }

    pub fn remove(&self, client_id: &str) {
        if let Ok(mut rows) = self.rows.write() {
            rows.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::tests::row;

    #[test]
    fn client_cache_answers_for_its_lifetime_then_reads_again() {
        let cache = ClientCache::default();
        assert!(cache.get("c1", 100).is_none());
        cache.insert(row("c1"), 100);
        assert_eq!(cache.get("c1", 100).unwrap().client_id, "c1");
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS - 1).is_some());
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS).is_none());
        assert!(cache.get("c2", 100).is_none());
        cache.remove("c1");
        assert!(cache.get("c1", 100).is_none());
    }

    #[test]
    fn client_cache_is_bounded() {
        let cache = ClientCache::default();
        for i in 0..ClientCache::CAPACITY {
            cache.insert(row(&format!("c{i}")), 0);
        }
        assert!(cache.get("c0", 0).is_some());
        cache.insert(row("one-more"), 0);
        assert!(cache.get("c0", 0).is_none(), "emptied when full");
        assert!(cache.get("one-more", 0).is_some());
        assert_eq!(cache.rows.read().unwrap().len(), 1);
    }
}
