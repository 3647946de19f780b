//! The experiments. Every experiment has one shape:
//! arrange (its own fresh data) → act (drive requests, recording every
//! latency and every outcome exactly) → check (invariants read from the
//! databases, each with expected, observed and evidence) → report.
//! The verdict is the report's: any fail → 1, else any unknown → 2, else 0.
//!
//! The run model they feed (`Invariant`, `Verdict`, `Report`, `Outcomes`,
//! `Latencies`, `Lab`, ...) lives one layer down in [`crate::run`]; import it
//! from there. The re-exports below keep older `super::…` paths compiling.

pub mod breaker;
pub mod experiment;
pub mod flood;
pub mod hostile;
pub mod outbox;
pub mod race;
pub mod replay;
pub mod rotate;
pub mod saga;
