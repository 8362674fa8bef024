-- The API's sessions and bot keys. Secrets are stored only as their sha256 digest.

-- One row per refresh token. A login starts a family; every refresh marks its token used and
-- adds the next one to the family; a used token presented again revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash        bytea PRIMARY KEY,
    family_id         uuid NOT NULL,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    used_at           timestamptz,
    revoked_at        timestamptz,
    -- The access token issued with it, revoked with the family.
    access_jti        uuid NOT NULL,
    access_expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Access tokens revoked before their expiry; a row is useless once the token has expired.
CREATE TABLE revoked_tokens (
    jti        uuid PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_idx ON revoked_tokens (expires_at);

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'user')),
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,  -- the key's first characters, to recognise it in a list
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,    -- to the minute: written at most once a minute
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);
