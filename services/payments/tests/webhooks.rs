//! Webhooks an attacker sends (issue 11, item 1), against real Postgres
//! and RabbitMQ: a body forged to a captured delivery's CRC-32 under its
//! headers, a transmission id used twice, a correctly signed claim the
//! provider's record doesn't back, a NUL character. Each must change
//! nothing: no status, no event for checkout, no money moved.

mod common;

use std::time::Duration;

use common::crc::with_crc32;
use common::{HOLD_WEBHOOKS, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use storefront_payments::contract::{Event, Provider};
use storefront_payments::provider::{CARD_APPROVE, CARD_NEVER_CONFIRM};
use storefront_payments::signature;
use storefront_payments::webhook::{self, Kind};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
/// How long "no event arrives" is watched for.
const QUIET: Duration = Duration::from_millis(700);

/// The body the provider would send for `kind` on `intent` (2590 EUR).
fn genuine(provider: Provider, kind: Kind, intent: &str) -> (String, String) {
    let id = webhook::new_event_id(provider);
    let body = webhook::body(provider, &id, kind, intent, 2590, "EUR", chrono::Utc::now());
    (id, body)
}

async fn outcome(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn rows(app: &TestApp, sql: &str, order: Uuid) -> i64 {
    app.scalar::<i64>(sql, order).await
}

const PROVIDER_CAPTURES: &str = "SELECT coalesce(sum(i.captures), 0)::bigint FROM {schema}.provider_intents i \
     JOIN {schema}.payments p USING (payment_id) WHERE p.order_id = $1";
const TRANSITIONS: &str = "SELECT count(*) FROM {schema}.payment_transitions t \
     JOIN {schema}.payments p USING (payment_id) WHERE p.order_id = $1";

#[tokio::test]
async fn a_body_forged_to_a_captured_deliverys_crc_under_its_headers_is_refused() {
    let Some(mut app) = spawn_app(&[]).await else {
        return;
    };
    // A genuine delivery the attacker captured: the provider's own body
    // for another customer's payment, with the headers it came with.
    let (other, _) = app.open(CARD_APPROVE, Provider::Paypal).await;
    assert!(app.await_status(other, "authorized", WAIT).await);
    let captured: String = app
        .scalar(
            "SELECT d.body FROM {schema}.provider_deliveries d JOIN {schema}.provider_intents i \
             USING (intent_id) JOIN {schema}.payments p USING (payment_id) \
             WHERE p.order_id = $1 LIMIT 1",
            other,
        )
        .await;
    let time = chrono::Utc::now().to_rfc3339();
    let transmission = Uuid::new_v4().to_string();
    let sig = signature::paypal_signature(
        common::PAYPAL_SECRET.as_bytes(),
        &transmission,
        &time,
        captured.as_bytes(),
    );
    let headers = [
        (signature::PAYPAL_TRANSMISSION_ID, transmission),
        (signature::PAYPAL_TRANSMISSION_TIME, time),
        (signature::PAYPAL_TRANSMISSION_SIG, sig),
    ];
    let (status, _) = outcome(app.post_webhook("paypal", &captured, &headers).await).await;
    assert_eq!(status, StatusCode::OK, "the genuine delivery itself");

    // The victim: a card the provider never confirms.
    let (victim, intent) = app.open(CARD_NEVER_CONFIRM, Provider::Paypal).await;
    let target = crc32fast::hash(captured.as_bytes());
    for (n, event_type) in ["PAYMENT.AUTHORIZATION.CREATED", "PAYMENT.CAPTURE.COMPLETED"]
        .into_iter()
        .enumerate()
    {
        let template = json!({"id": format!("WH-FORGED-{n}"), "event_type": event_type,
            "resource": {"id": intent, "amount": {"value": "25.90", "currency_code": "EUR"}},
            "pad": "{pad}"})
        .to_string();
        let forged = with_crc32(&template, target).expect("a CRC-32 can be forced");
        assert_eq!(crc32fast::hash(forged.as_bytes()), target);
        let (status, problem) = outcome(app.post_webhook("paypal", &forged, &headers).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{event_type}: {problem}");
    }

    assert_eq!(app.payment(victim).await["payment"]["status"], "pending");
    assert_eq!(app.events_about(victim, QUIET).await, []);
    assert_eq!(
        rows(&app, TRANSITIONS, victim).await,
        1,
        "only its creation"
    );
    assert_eq!(rows(&app, PROVIDER_CAPTURES, victim).await, 0);
    let forged_rows = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.webhook_events \
             WHERE event_id LIKE 'WH-FORGED-%' AND $1::uuid IS NOT NULL",
            victim,
        )
        .await;
    assert_eq!(forged_rows, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn a_transmission_id_is_accepted_once_and_an_honest_resend_still_gets_200() {
    let Some(mut app) = spawn_app(HOLD_WEBHOOKS).await else {
        return;
    };
    // The provider authorized; its webhook is held, the test delivers it.
    let (order, intent) = app.open(CARD_APPROVE, Provider::Paypal).await;
    let (_, body) = genuine(Provider::Paypal, Kind::Authorized, &intent);
    let transmission = Uuid::new_v4().to_string();

    let (status, first) = outcome(app.paypal(&transmission, &body).await).await;
    assert_eq!(
        (status, first["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let (status, again) = outcome(app.paypal(&transmission, &body).await).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate_transmission")),
        "the same delivery resent"
    );

    // Another body under the used id, validly signed: refused, not applied.
    let (other_id, other) = genuine(Provider::Paypal, Kind::Authorized, &intent);
    let response = app.paypal(&transmission, &other).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let recorded = app
        .scalar::<i64>(
            &format!(
                "SELECT count(*) FROM {{schema}}.webhook_events WHERE event_id = '{other_id}' \
                 AND $1::uuid IS NOT NULL"
            ),
            order,
        )
        .await;
    assert_eq!(recorded, 0, "the second body was not recorded");
    let transmissions = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.webhook_transmissions WHERE $1::uuid IS NOT NULL",
            order,
        )
        .await;
    assert_eq!(transmissions, 1);

    let events = app.events_about(order, QUIET).await;
    assert!(
        matches!(events[..], [Event::PaymentAuthorized { .. }]),
        "{events:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_signed_claim_the_providers_record_does_not_back_changes_nothing() {
    let Some(mut app) = spawn_app(HOLD_WEBHOOKS).await else {
        return;
    };
    // The never-confirming card: the provider holds nothing, captures nothing.
    let (victim, intent) = app.open(CARD_NEVER_CONFIRM, Provider::Paypal).await;
    let (_, authorized) = genuine(Provider::Paypal, Kind::Authorized, &intent);
    let (status, answer) =
        outcome(app.paypal(&Uuid::new_v4().to_string(), &authorized).await).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("unconfirmed"))
    );
    assert_eq!(app.payment(victim).await["payment"]["status"], "pending");

    // Where the forgery used to lead: checkout, believing it, asked for
    // the capture. A signed "capture completed" must not capture.
    sqlx::query(&format!(
        "UPDATE \"{}\".payments SET status = 'capture_requested' WHERE order_id = $1",
        app.schema().name
    ))
    .bind(victim)
    .execute(&app.schema().admin)
    .await
    .unwrap();
    let (_, captured) = genuine(Provider::Paypal, Kind::Captured, &intent);
    let (status, answer) = outcome(app.paypal(&Uuid::new_v4().to_string(), &captured).await).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("unconfirmed"))
    );
    assert_eq!(
        app.payment(victim).await["payment"]["status"],
        "capture_requested"
    );
    assert_eq!(app.events_about(victim, QUIET).await, []);
    assert_eq!(rows(&app, PROVIDER_CAPTURES, victim).await, 0);
    assert_eq!(
        rows(&app, TRANSITIONS, victim).await,
        1,
        "only its creation"
    );
    let unconfirmed = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.webhook_events WHERE outcome = 'unconfirmed' \
             AND $1::uuid IS NOT NULL",
            victim,
        )
        .await;
    assert_eq!(unconfirmed, 2, "both claims are on record as unconfirmed");

    // A real authorization (Stripe this time): the wrong amount, the wrong
    // currency or none are not confirmed; the provider's own figures are.
    let (order, pi) = app.open(CARD_APPROVE, Provider::Stripe).await;
    let claim = |amount: Option<i64>, currency: &str| {
        let mut object = json!({"id": pi, "object": "payment_intent", "currency": currency});
        if let Some(a) = amount {
            object["amount"] = json!(a);
        }
        json!({"id": webhook::new_event_id(Provider::Stripe), "object": "event",
               "type": "payment_intent.amount_capturable_updated", "data": {"object": object}})
        .to_string()
    };
    for wrong in [
        claim(Some(1), "eur"),
        claim(Some(2590), "usd"),
        claim(None, "eur"),
    ] {
        let (status, answer) = outcome(app.stripe(&wrong).await).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (StatusCode::OK, Some("unconfirmed")),
            "{wrong}"
        );
    }
    assert_eq!(app.payment(order).await["payment"]["status"], "pending");
    let (status, answer) = outcome(app.stripe(&claim(Some(2590), "eur")).await).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    assert_eq!(app.payment(order).await["payment"]["status"], "authorized");
    let events = app.events_about(order, QUIET).await;
    assert!(
        matches!(events[..], [Event::PaymentAuthorized { .. }]),
        "{events:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_signed_webhook_holding_a_nul_character_is_a_400_and_stores_nothing() {
    let Some(app) = spawn_app(HOLD_WEBHOOKS).await else {
        return;
    };
    let (order, intent) = app.open(CARD_APPROVE, Provider::Stripe).await;
    let stripe = json!({"id": "evt_nul\u{0}", "object": "event",
        "type": "payment_intent.amount_capturable_updated",
        "data": {"object": {"id": intent, "amount": 2590, "currency": "eur"}}})
    .to_string();
    let (_, paypal_intent) = app.open(CARD_APPROVE, Provider::Paypal).await;
    let paypal = json!({"id": "WH-NUL", "event_type": "PAYMENT.AUTHORIZATION.CREATED",
        "resource": {"id": paypal_intent, "note": "a\u{0}b",
                     "amount": {"value": "25.90", "currency_code": "EUR"}}})
    .to_string();
    assert!(stripe.contains("\\u0000") && paypal.contains("\\u0000"));
    for response in [
        app.stripe(&stripe).await,
        app.paypal(&Uuid::new_v4().to_string(), &paypal).await,
    ] {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    for table in ["webhook_events", "webhook_transmissions"] {
        let n = app
            .scalar::<i64>(
                &format!("SELECT count(*) FROM {{schema}}.{table} WHERE $1::uuid IS NOT NULL"),
                order,
            )
            .await;
        assert_eq!(n, 0, "{table}");
    }
    assert_eq!(app.payment(order).await["payment"]["status"], "pending");
    app.cleanup().await;
}
