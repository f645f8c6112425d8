-- What the operator's commands need (identity-api/src/storage/rows.rs declares the columns).
--
-- The audit trail records administrative changes too: `actor` is who ran the command, as the
-- operator's machine tells it (a claim, not an authenticated identity), `detail` a JSON object
-- of what changed (never a secret). Both are NULL on the rows of issues, refreshes and
-- revocations. No index is added: audit rows are written by every issue and refresh, and the
-- reader finds its id range by binary search on the primary key (`storage/audit.rs`).
ALTER TABLE audit_events ADD COLUMN actor TEXT;
ALTER TABLE audit_events ADD COLUMN detail TEXT;

-- `client rotate-secret --overlap`: the verifier of the secret being replaced, accepted until
-- previous_verifier_expires_at (Unix seconds). Both NULL when there is no overlap.
ALTER TABLE clients ADD COLUMN previous_secret_verifier BYTEA;
ALTER TABLE clients ADD COLUMN previous_verifier_expires_at BIGINT;
