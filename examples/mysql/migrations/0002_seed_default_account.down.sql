DELETE FROM users WHERE email = 'owner@example.com';
DELETE FROM accounts WHERE name = 'Default account';
