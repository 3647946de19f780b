// The tests embed the payments migrations (sqlx::migrate!); rebuild them
// when a migration is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/payments");
}
