use super::*;
use crate::webhook::Money;

#[test]
fn test_cards_select_their_behaviour() {
    assert_eq!(Behaviour::of_card(CARD_APPROVE), Behaviour::Approve);
    assert_eq!(Behaviour::of_card(CARD_DECLINE), Behaviour::Decline);
    assert_eq!(
        Behaviour::of_card(CARD_FAIL_CAPTURE),
        Behaviour::FailCapture
    );
    assert_eq!(
        Behaviour::of_card(CARD_NEVER_CONFIRM),
        Behaviour::NeverConfirm
    );
    assert_eq!(Behaviour::of_card("5555555555554444"), Behaviour::Approve);
    assert_eq!(Behaviour::of_card("4242424242424241"), Behaviour::Decline);
}

fn record(state: &str, captures: i32) -> Record {
    Record {
        state: state.into(),
        amount_cents: 2590,
        currency: "EUR".into(),
        captures,
    }
}

#[test]
fn a_capture_is_confirmed_only_once_the_provider_moved_the_money() {
    let eur = Money::new(2590, "EUR");
    let captured = record("captured", 1);
    assert_eq!(captured.confirms(Kind::Captured, Some(&eur), &eur), Ok(()));
    for state in [
        "processing",
        "authorized",
        "capture_failed",
        "canceled",
        "declined",
    ] {
        assert!(
            matches!(
                record(state, 0).confirms(Kind::Captured, Some(&eur), &eur),
                Err(Unconfirmed::State { .. })
            ),
            "{state}"
        );
    }
    // A "captured" state with no capture counted is not money moved.
    assert!(
        record("captured", 0)
            .confirms(Kind::Captured, Some(&eur), &eur)
            .is_err()
    );
}

#[test]
fn each_kind_is_confirmed_by_its_provider_states_only() {
    let eur = Money::new(2590, "EUR");
    let cases = [
        (
            Kind::Authorized,
            &["authorized", "captured", "capture_failed"][..],
        ),
        (Kind::Declined, &["declined"][..]),
        (Kind::CaptureFailed, &["capture_failed"][..]),
        (Kind::Voided, &["canceled"][..]),
    ];
    let states = [
        "processing",
        "authorized",
        "declined",
        "captured",
        "capture_failed",
        "canceled",
    ];
    for (kind, backing) in cases {
        for state in states {
            let confirmed = record(state, 1).confirms(kind, Some(&eur), &eur).is_ok();
            assert_eq!(confirmed, backing.contains(&state), "{kind:?} in {state}");
        }
    }
}

#[test]
fn the_amount_and_currency_must_match_the_record_and_the_payment() {
    let eur = Money::new(2590, "EUR");
    let rec = record("captured", 1);
    let cent = Money::new(1, "EUR");
    assert!(matches!(
        rec.confirms(Kind::Captured, Some(&cent), &eur),
        Err(Unconfirmed::Amount { .. })
    ));
    let usd = Money::new(2590, "usd");
    assert!(matches!(
        rec.confirms(Kind::Captured, Some(&usd), &eur),
        Err(Unconfirmed::Amount { .. })
    ));
    assert_eq!(
        rec.confirms(Kind::Captured, None, &eur),
        Err(Unconfirmed::NoAmount)
    );
    // A session of the provider for another amount isn't this payment's.
    let other = Money::new(100, "EUR");
    assert!(matches!(
        rec.confirms(Kind::Captured, Some(&other), &other),
        Err(Unconfirmed::NotThisPayment { .. })
    ));
    // Lower-case currencies (Stripe's) compare equal.
    assert_eq!(
        rec.confirms(Kind::Captured, Some(&Money::new(2590, "eur")), &eur),
        Ok(())
    );
}

#[test]
fn every_test_card_passes_luhn_and_junk_does_not() {
    for card in [
        CARD_APPROVE,
        CARD_DECLINE,
        CARD_FAIL_CAPTURE,
        CARD_NEVER_CONFIRM,
    ] {
        assert!(luhn_valid(card), "{card}");
    }
    for junk in [
        "",
        "4242",
        "4242 4242 4242 4242",
        "424242424242424x",
        "4242424242424243",
    ] {
        assert!(!luhn_valid(junk), "{junk}");
    }
}
