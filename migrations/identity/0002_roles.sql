-- Roles: what resource servers authorize on. `customer` places orders and
-- files claims; `staff` edits the catalogue. A user holds at least one; the
-- set is closed (a new role is a new migration). Access tokens carry them
-- in a `roles` claim, read at login and at every refresh.

ALTER TABLE users
    ADD COLUMN roles text[] NOT NULL DEFAULT ARRAY['customer']::text[]
    CONSTRAINT users_roles_known
        CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['customer', 'staff']::text[]);

-- alice, bob and carol keep the default (customer); dave is staff.
UPDATE users SET roles = ARRAY['staff'] WHERE username = 'dave';

-- More customers, so load can spread over accounts. Passwords follow the
-- seed's rule, "<username>-password"; hashes from
-- `cargo test -p storefront-identity -- --ignored print_seed_hashes --nocapture`.
INSERT INTO users (id, username, password_hash, display_name) VALUES
('00000000-0000-4000-8000-000000000e12', 'erin',  '$argon2id$v=19$m=19456,t=2,p=1$RHx8KQs0hUBKTsFIAUXdsA$OQN1sdqCuUYukdw0gH7PWwOC0THJTDtoPcPh+IvvJtg', 'Erin Example'),
('00000000-0000-4000-8000-000000000f2a', 'frank', '$argon2id$v=19$m=19456,t=2,p=1$TN6Mm4ib2c9LPqC07CC7Ig$QLm1k31Z4CWRGpaXN3sak3G4XA60m/3gPuxbWQRpxwc', 'Frank Example'),
('00000000-0000-4000-8000-000000009ace', 'grace', '$argon2id$v=19$m=19456,t=2,p=1$oCgIEl+RQ2V6KPNsby71cg$Bx+9Wh36lrzRgxgDO0WC4n4JSNLTjmBe5c92cwEaRAU', 'Grace Example'),
('00000000-0000-4000-8000-00000000be1d', 'heidi', '$argon2id$v=19$m=19456,t=2,p=1$6H1M6qgTbh/ClJYz6pc1Ag$WmzS58hltRbnb6sL2EOpA7PyUxp5tabP3bhm/RzkovM', 'Heidi Example')
ON CONFLICT (username) DO NOTHING;
