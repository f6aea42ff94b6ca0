-- Step 3 of 3: NOT NULL. SQLite cannot alter a column's constraints, so the table is
-- rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter).
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    display_name TEXT NOT NULL
);
INSERT INTO users_new (id, account_id, email, created_at, display_name)
SELECT id, account_id, email, created_at, display_name FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_account_id ON users (account_id);
