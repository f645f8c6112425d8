-- No query reads refresh tokens by family: a family is revoked in token_families, and the
-- refresh-token lookup joins from the token to its family. The index only cost every issue and
-- rotation one more B-tree insert (docs/benchmarks.md, section 5). Deleting a family would now
-- scan refresh_tokens for the foreign key; nothing deletes families (delete their refresh tokens
-- first, in bulk, if a purge is ever added).
DROP INDEX refresh_tokens_family;
