//! The accounts identity seeds in every fleet (password `<name>-password`):
//! what load users, fault probes and experiments log in as.

/// The seeded customers.
pub const CUSTOMERS: [&str; 7] = ["alice", "bob", "carol", "erin", "frank", "grace", "heidi"];
/// The seeded staff member.
pub const STAFF: &str = "dave";

/// The seeded password of account `name`.
pub fn password(name: &str) -> String {
    format!("{name}-password")
}
