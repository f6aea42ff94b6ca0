-- Step 1 of 3: a nullable column, so existing rows stay valid.
ALTER TABLE users ADD COLUMN display_name VARCHAR(255) NULL;
