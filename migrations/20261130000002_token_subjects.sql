-- A token may also be presented as a client certificate: with mTLS, a call that carries no bearer
-- token but a verified certificate whose subject common name is a token's `subject` is that
-- token's.
ALTER TABLE gw_tokens ADD COLUMN subject TEXT;
CREATE UNIQUE INDEX gw_tokens_subject ON gw_tokens (subject) WHERE subject IS NOT NULL;
