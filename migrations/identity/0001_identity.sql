-- The identity service's schema: users, refresh-token families and their
-- single-use tokens, and the durable record of revoked access tokens.
-- Runs as the `identity` group role (the schema's owner), so every object
-- belongs to it and never to one of Vault's short-lived login roles.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username <> ''),
    -- Argon2id PHC string: algorithm, parameters and salt travel with it.
    password_hash text NOT NULL,
    display_name  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One family per login: every refresh token descends from the one the
-- password grant issued. Reuse of a spent token revokes the family.
CREATE TABLE refresh_families (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('reuse_detected', 'revoked')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

-- Tokens are stored as SHA-256 of the opaque value the client holds.
CREATE TABLE refresh_tokens (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id       uuid NOT NULL REFERENCES refresh_families (id),
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    -- Set when exchanged; a second exchange is reuse, unless it is the
    -- same request retrying (same used_by_request).
    used_at         timestamptz,
    used_by_request uuid,
    replaced_by     bytea,
    CHECK ((used_at IS NULL) = (used_by_request IS NULL))
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Revoked access tokens until they expire. Redis holds the copy verifiers
-- read (identity:revoked:<jti>); this is the durable record.
CREATE TABLE revoked_access_tokens (
    jti        uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);

-- Test users. Their passwords are "<username>-password" (alice /
-- alice-password, ...). The hashes were made with
-- `cargo test -p storefront-identity -- --ignored print_seed_hashes --nocapture`.
INSERT INTO users (id, username, password_hash, display_name) VALUES
('00000000-0000-4000-8000-00000000a11c', 'alice', '$argon2id$v=19$m=19456,t=2,p=1$C/pto3PJ7mZjbj1w2BDnlA$zs5CQIttIPMBl/GbfB0QtkkJA4pQlFbZYETeKzoX5AA', 'Alice Example'),
('00000000-0000-4000-8000-000000000b0b', 'bob',   '$argon2id$v=19$m=19456,t=2,p=1$z8Z0pJ6EkIVDDoO5a3jUAQ$ZUQUCU3QdUYyvCGc92MFgwvulWcYoTOh10/ZaK8OLDY', 'Bob Example'),
('00000000-0000-4000-8000-0000000ca201', 'carol', '$argon2id$v=19$m=19456,t=2,p=1$/Zrn268RVNZJdMI4h8yBcA$1jYUouyJL6yfabuz48sqSe1GMSz4Ftl+9kUPvRVVWZQ', 'Carol Example'),
('00000000-0000-4000-8000-00000000da7e', 'dave',  '$argon2id$v=19$m=19456,t=2,p=1$ZmHx2f8LQGbP8DDYio3UhQ$4RFSjLsGWUkWsUvyE8K0fycbaVrpWTqH7/STYlEycAA', 'Dave Example');
