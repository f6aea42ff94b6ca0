-- The default account and its owner: data only, in one transaction.
INSERT INTO accounts (name) VALUES ('Default account');
INSERT INTO users (account_id, email) SELECT id, 'owner@example.com' FROM accounts;
