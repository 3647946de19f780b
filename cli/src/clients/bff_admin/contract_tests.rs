//! The mirrors in [`super::wire`] against the BFF's own types: the BFF's
//! `chaos.rs`, `breaker.rs` and `retry.rs` (self-contained: std, serde,
//! rand, axum's `StatusCode`) compiled into this test, so a field renamed
//! or added on either side fails here, without the CLI depending on the
//! BFF crate.

use std::time::{Duration, Instant};

use super::wire::{ActiveFault, BreakerConfig, BreakerState, ChaosRequest, ChaosView, FaultSpec};

#[allow(dead_code, clippy::all)]
#[path = "../../../../services/bff/src/chaos.rs"]
mod bff_chaos;

#[allow(dead_code, clippy::all)]
#[path = "../../../../services/bff/src/breaker.rs"]
mod bff_breaker;

#[allow(dead_code, clippy::all)]
#[path = "../../../../services/bff/src/retry.rs"]
mod bff_retry;

fn fault() -> FaultSpec {
    FaultSpec {
        target: "catalog-2".into(),
        latency_ms: 10,
        jitter_ms: 5,
        error_rate: 0.25,
        error_status: 502,
        abort_rate: 0.5,
        ttl_secs: 30,
    }
}

#[test]
fn the_bff_reads_the_clis_chaos_request_field_for_field() {
    for seed in [None, Some(9)] {
        let ours = ChaosRequest {
            seed,
            faults: vec![fault(), FaultSpec::on("catalog", 5)],
        };
        let body = serde_json::to_string(&ours).unwrap();
        // The BFF's type denies unknown fields: a renamed one fails here.
        let theirs: bff_chaos::ChaosRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(theirs.seed, seed);
        let back: Vec<FaultSpec> =
            serde_json::from_value(serde_json::to_value(&theirs.faults).unwrap()).unwrap();
        assert_eq!(back, ours.faults);
    }
}

#[test]
fn the_cli_reads_the_bffs_chaos_view_field_for_field() {
    let now = Instant::now();
    let mut chaos = bff_chaos::Chaos::default();
    let request: bff_chaos::ChaosRequest = serde_json::from_value(serde_json::json!({
        "seed": 42, "faults": [serde_json::to_value(fault()).unwrap()],
    }))
    .unwrap();
    chaos.set(request, now);
    let doc = serde_json::to_value(chaos.view(now)).unwrap();
    let ours: ChaosView = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(
        ours,
        ChaosView {
            seed: 42,
            faults: vec![ActiveFault {
                spec: fault(),
                expires_in_secs: 30.0,
            }],
        }
    );
    // Nothing the BFF sends is dropped on the way back (the untyped calls
    // hand the typed answer on as JSON).
    assert_eq!(serde_json::to_value(&ours).unwrap(), doc);
}

#[test]
fn the_cli_reads_the_bffs_breaker_settings_and_states() {
    let config = bff_breaker::BreakerConfig {
        consecutive_failures: 5,
        window: Duration::from_secs(10),
        min_calls: 20,
        failure_ratio: 0.5,
        open_for: Duration::from_millis(2000),
        half_open_probes: 1,
    };
    let doc = serde_json::to_value(config).unwrap();
    let ours: BreakerConfig = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!((ours.open_ms, ours.window_ms), (2000, 10_000));
    assert_eq!(serde_json::to_value(&ours).unwrap(), doc);

    for (theirs, ours) in [
        (bff_breaker::State::Closed, BreakerState::Closed),
        (bff_breaker::State::Open, BreakerState::Open),
        (bff_breaker::State::HalfOpen, BreakerState::HalfOpen),
    ] {
        let v = serde_json::to_value(theirs).unwrap();
        assert_eq!(serde_json::from_value::<BreakerState>(v).unwrap(), ours);
    }
}

#[test]
fn the_cli_reads_the_bffs_retry_settings() {
    let retry = bff_retry::RetryConfig {
        max_attempts: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(200),
        budget_ratio: 0.2,
        budget_min_per_sec: 10,
    };
    let doc = serde_json::to_value(retry).unwrap();
    let ours: super::wire::RetryConfig = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!((ours.base_ms, ours.cap_ms), (10, 200));
    assert_eq!(serde_json::to_value(&ours).unwrap(), doc);
}
