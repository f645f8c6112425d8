-- The purge deletes ended token families with their refresh tokens. Deleting a family checks
-- the refresh tokens' foreign key, and without an index by family that is a scan of the whole
-- table for every family deleted. The index costs each issue and rotation one B-tree insert.
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
