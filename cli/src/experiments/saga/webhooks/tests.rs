//! The webhook chaos's pure parts: forged bodies that keep the CRC, labels,
//! intents, how many re-deliveries.

use super::*;

#[test]
fn the_intent_is_found_in_both_shapes() {
    assert_eq!(
        intent_of(r#"{"data":{"object":{"id":"pi_1"}}}"#).as_deref(),
        Some("pi_1")
    );
    assert_eq!(
        intent_of(r#"{"resource":{"id":"PAYID-1"}}"#).as_deref(),
        Some("PAYID-1")
    );
    assert_eq!(intent_of("{}"), None);
}

#[test]
fn the_crc_arm_forges_a_valid_json_body_with_the_genuine_crc() {
    for provider in ["stripe", "paypal"] {
        let genuine = damaging_body(provider, "genuine", "pi_genuine");
        let forged = crc::with_crc32(
            &padded_body(provider, "forged", "pi_victim"),
            crc::crc32(genuine.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            crc::crc32(forged.as_bytes()),
            crc::crc32(genuine.as_bytes())
        );
        let value: Value = serde_json::from_str(&forged).unwrap();
        assert_eq!(intent_of(&forged).as_deref(), Some("pi_victim"), "{value}");
    }
}

#[test]
fn the_signed_claim_names_its_victim_and_a_wrong_amount_in_both_shapes() {
    for provider in ["stripe", "paypal"] {
        let body = authorization_claim(provider, "e", "pi_victim");
        assert_eq!(intent_of(&body).as_deref(), Some("pi_victim"));
        let v: Value = serde_json::from_str(&body).unwrap();
        let amount = v
            .pointer("/data/object/amount")
            .or_else(|| v.pointer("/resource/amount/value"))
            .unwrap();
        assert!(amount == 1 || amount == "0.01", "{provider}: {amount}");
    }
}

#[test]
fn tampering_changes_the_bytes_of_both_shapes() {
    for provider in ["stripe", "paypal"] {
        let body = damaging_body(provider, "e", "i");
        let tampered = body
            .replace("0.01", "9999.00")
            .replace("\"amount\":1", "\"amount\":999900");
        assert_ne!(body, tampered, "{provider}");
    }
}

#[test]
fn the_first_genuine_webhook_is_always_re_delivered_and_none_more_than_twice() {
    let mut counts = [0u32; 3];
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let first = resends(&mut rng, false);
        assert!((1..=2).contains(&first), "seed {seed}: {first}");
        for _ in 0..5 {
            let later = resends(&mut rng, true);
            assert!(later <= 2, "seed {seed}: {later}");
            counts[later as usize] += 1;
        }
    }
    // Once one was re-delivered, a webhook may get none.
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
}

#[test]
fn a_round_reads_from_the_margin_before_the_newest_webhook_seen() {
    use chrono::TimeZone;
    assert_eq!(next_since(None), None, "before any webhook: everything");
    let newest = chrono::Utc
        .with_ymd_and_hms(2026, 12, 4, 5, 0, 0)
        .single()
        .expect("a valid time");
    let since = next_since(Some(newest)).expect("a bound");
    assert_eq!((newest - since).to_std().ok(), Some(RECEIVED_MARGIN));
}
