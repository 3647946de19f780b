// The tests embed the checkout migrations (sqlx::migrate!); rebuild them
// when a migration is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/checkout");
}
