//! What a group commit is asked to write, how a batch's calls become rows once the spend has
//! decided which rotations won, and the answers each call gets.

use std::collections::HashSet;

use sqlx::Row;

use crate::storage::batch::Failure;
use crate::storage::rows::{AuditRow, FamilyRow, RefreshRow, RequestEvent};

/// The client as an issue saw it: the verifier of the secret it authenticated by, and the
/// scopes, audiences, grant types and subject policy it was judged by. The write stores the family only while the client is
/// enabled and its row still says so, checked in the statement that stores it: a
/// `client disable`, `rotate-secret` or `update` that commits first refuses the issue, however
/// old the row it was judged by (the client cache's).
#[derive(Clone)]
pub struct ClientSeen {
    pub verifier: Vec<u8>,
    pub scopes: String,
    pub audiences: String,
    pub grant_types: String,
    pub subject_policy: String,
}

impl std::fmt::Debug for ClientSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSeen")
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("grant_types", &self.grant_types)
            .field("subject_policy", &self.subject_policy)
            .finish_non_exhaustive()
    }
}

/// A write of the hot path.
// Opens are most of the writes, and each would pay an allocation if its family were boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Write {
    /// Token issue: a new family with its first refresh token (none for a client_credentials
    /// grant without one), if its client is still as `client` saw it.
    Open {
        family: FamilyRow,
        refresh: Option<RefreshRow>,
        client: ClientSeen,
    },
    /// Refresh: spend `old_hash` (unless spent already or the family is revoked) and store `new`.
    Rotate {
        old_hash: [u8; 32],
        new: RefreshRow,
        now: i64,
        client_id: String,
        subject: String,
    },
}

/// Outcome of a token issue's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The family and its first refresh token are stored.
    Stored,
    /// Nothing stored: the client was disabled, its secret rotated, its grants changed or the
    /// client removed after it authenticated (checked in the statement that stores the family).
    ClientChanged,
}

/// Outcome of the atomic refresh rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// This request spent the token and stored the new one.
    Rotated,
    /// The token was spent already (reuse) or its family was revoked meanwhile.
    Lost,
}

/// What a [`Write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Open(Opened),
    Rotation(Rotation),
}

/// The tokens a batch's rotations present, and the latest time among them: what the spend binds.
pub fn spends(calls: &[Write]) -> (Vec<&[u8]>, i64) {
    let mut now = i64::MIN;
    let mut hashes = Vec::new();
    for call in calls {
        if let Write::Rotate {
            old_hash, now: at, ..
        } = call
        {
            hashes.push(old_hash.as_slice());
            now = now.max(*at);
        }
    }
    (hashes, now)
}

/// What a batch writes once the spend has decided which rotations won.
#[derive(Default)]
pub struct Rows<'a> {
    /// Each with its client as the issue saw it.
    pub families: Vec<(&'a FamilyRow, &'a ClientSeen)>,
    pub refreshes: Vec<&'a RefreshRow>,
    /// Families of the winning rotations, and the latest time of the batch's rotations.
    pub last_used: Vec<&'a str>,
    pub now: i64,
    pub audits: Vec<AuditRow>,
}

impl<'a> Rows<'a> {
    /// A rotation wins when the spend returned its token, and only the first of the batch's
    /// calls presenting that token wins (the others are reuse, as if they had come after).
    pub fn decide(calls: &'a [Write], mut spent: HashSet<Vec<u8>>) -> (Self, Vec<Written>) {
        let mut rows = Rows::default();
        let mut written = Vec::with_capacity(calls.len());
        for call in calls {
            match call {
                Write::Open {
                    family,
                    refresh,
                    client,
                } => {
                    rows.families.push((family, client));
                    rows.refreshes.extend(refresh);
                    rows.audits.push(AuditRow::family(
                        family.created_at,
                        RequestEvent::Issue,
                        family,
                        "issued",
                    ));
                    written.push(Written::Open(Opened::Stored));
                }
                Write::Rotate {
                    old_hash,
                    new,
                    now,
                    client_id,
                    subject,
                } => {
                    if !spent.remove(old_hash.as_slice()) {
                        written.push(Written::Rotation(Rotation::Lost));
                        continue;
                    }
                    rows.refreshes.push(new);
                    rows.last_used.push(&new.family_id);
                    rows.now = rows.now.max(*now);
                    rows.audits.push(AuditRow {
                        at: *now,
                        event: RequestEvent::Refresh.name().to_owned(),
                        client_id: Some(client_id.clone()),
                        subject: Some(subject.clone()),
                        family_id: Some(new.family_id.clone()),
                        outcome: "rotated".to_owned(),
                        actor: None,
                        detail: None,
                        tenant_id: new.tenant_id.clone(),
                    });
                    written.push(Written::Rotation(Rotation::Rotated));
                }
            }
        }
        (rows, written)
    }
}

/// Binds a batch's `$rows` to a text of `texts::writes` for `$n` rows (`rotations_only`: a text
/// without the families), each part padded to `$n` rows. A macro, not a function, so that it
/// binds the concrete query of whichever driver it is expanded for.
macro_rules! bind_writes {
    ($q:ident, $rows:expr, $n:expr) => {
        for (family, client) in &$rows.families {
            $q = family
                .bind($q)
                .bind(client.verifier.as_slice())
                .bind(client.scopes.as_str())
                .bind(client.audiences.as_str())
                .bind(client.grant_types.as_str())
                .bind(client.subject_policy.as_str());
        }
        for _ in $rows.families.len()..$n {
            $q = $crate::storage::rows::FamilyRow::bind_nulls($q)
                .bind(None::<&[u8]>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<&str>);
        }
        bind_writes!($q, $rows, $n, rotations_only);
    };
    ($q:ident, $rows:expr, $n:expr, rotations_only) => {
        for refresh in &$rows.refreshes {
            $q = refresh.bind($q);
        }
        for _ in $rows.refreshes.len()..$n {
            $q = $crate::storage::rows::RefreshRow::bind_nulls($q);
        }
        $q = $q.bind($rows.now);
        for family_id in &$rows.last_used {
            $q = $q.bind(*family_id);
        }
        for _ in $rows.last_used.len()..$n {
            $q = $q.bind(None::<&str>);
        }
        for audit in &$rows.audits {
            $q = audit.bind($q);
        }
        for _ in $rows.audits.len()..$n {
            $q = $crate::storage::rows::AuditRow::bind_nulls($q);
        }
    };
}
pub(crate) use bind_writes;

/// Binds the spend: the time, then the tokens padded with NULLs to `$n`.
macro_rules! bind_spend {
    ($q:ident, $hashes:expr, $now:expr, $n:expr) => {
        $q = $q.bind($now);
        for hash in &$hashes {
            $q = $q.bind(*hash);
        }
        for _ in $hashes.len()..$n {
            $q = $q.bind(None::<&[u8]>);
        }
    };
}
pub(crate) use bind_spend;

/// The failure of the statement that commits: a refusal by the database left nothing
/// committed; a connection lost meanwhile leaves the outcome unknown.
pub fn commit_failure(error: sqlx::Error) -> Failure {
    Failure {
        unconfirmed: !matches!(error, sqlx::Error::Database(_)),
        error: error.into(),
    }
}

/// The answers once the writes committed: an issue whose family the writes did not return was
/// refused by its client's row. Each issue inserts one family at most, so when as many came back
/// as there are issues (nearly always) every one was stored and the ids need not be read.
/// Reading them cannot fail for a committed batch without leaving its answers unknown, hence
/// `unconfirmed`.
pub fn answers<R: Row>(
    calls: &[Write],
    mut written: Vec<Written>,
    returned: &[R],
) -> Result<Vec<Written>, Failure>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let issues = calls
        .iter()
        .filter(|c| matches!(c, Write::Open { .. }))
        .count();
    if returned.len() == issues {
        return Ok(written);
    }
    let mut stored = HashSet::with_capacity(returned.len());
    for row in returned {
        let family_id: String = row.try_get(0).map_err(|e| Failure {
            error: e.into(),
            unconfirmed: true,
        })?;
        stored.insert(family_id);
    }
    for (call, answer) in calls.iter().zip(&mut written) {
        if let Write::Open { family, .. } = call
            && !stored.contains(&family.family_id)
        {
            *answer = Written::Open(Opened::ClientChanged);
        }
    }
    Ok(written)
}
