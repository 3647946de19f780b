//! The payments service end to end: commands in over RabbitMQ, the
//! simulated provider's signed webhooks over HTTP, events out through the
//! outbox — against real Postgres and RabbitMQ.

mod common;

use std::time::Duration;

use common::{HOLD_WEBHOOKS, LAB_TOKEN, STRIPE_SECRET, TestApp, spawn_app};
use reqwest::StatusCode;
use storefront_kit::amqp;
use storefront_payments::contract::{Command, Event, Provider};
use storefront_payments::provider::{
    CARD_APPROVE, CARD_DECLINE, CARD_FAIL_CAPTURE, CARD_NEVER_CONFIRM,
};
use storefront_payments::signature;
use storefront_payments::webhook::{self, Kind};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn authorize(order_id: Uuid, card: &str, provider: Provider) -> Command {
    Command::AuthorizePayment {
        order_id,
        amount_cents: 2590,
        currency: "EUR".into(),
        card_number: card.into(),
        provider,
    }
}

/// The next event for `order_id` (others are dropped: one order per step here).
async fn event_for(app: &mut TestApp, order_id: Uuid) -> Option<Event> {
    loop {
        let event = app.next_event(WAIT).await?;
        if event.order_id() == order_id {
            return Some(event);
        }
    }
}

async fn count(app: &TestApp, sql: &str, order_id: Uuid) -> i64 {
    app.scalar::<i64>(sql, order_id).await
}

const CAPTURES: &str = "SELECT coalesce(sum(i.captures), 0)::bigint FROM {schema}.provider_intents i \
     JOIN {schema}.payments p USING (payment_id) WHERE p.order_id = $1";
const INTO_CAPTURED: &str = "SELECT count(*) FROM {schema}.payment_transitions t \
     JOIN {schema}.payments p USING (payment_id) WHERE p.order_id = $1 AND t.to_status = 'captured'";

#[tokio::test]
async fn an_approved_payment_is_authorized_then_captured_exactly_once() {
    let Some(mut app) = spawn_app(&[]).await else {
        return;
    };
    let order = Uuid::new_v4();
    app.send(
        Uuid::new_v4(),
        &authorize(order, CARD_APPROVE, Provider::Stripe),
    )
    .await;
    assert!(matches!(
        event_for(&mut app, order).await,
        Some(Event::PaymentAuthorized { .. })
    ));

    let capture = Uuid::new_v4();
    app.send(capture, &Command::CapturePayment { order_id: order })
        .await;
    match event_for(&mut app, order).await {
        Some(Event::PaymentCaptured { amount_cents, .. }) => assert_eq!(amount_cents, 2590),
        other => panic!("expected payment_captured, got {other:?}"),
    }
    // The same message again is a duplicate; a new capture request only
    // re-announces the outcome.
    app.send(capture, &Command::CapturePayment { order_id: order })
        .await;
    app.send(Uuid::new_v4(), &Command::CapturePayment { order_id: order })
        .await;
    assert!(matches!(
        event_for(&mut app, order).await,
        Some(Event::PaymentCaptured { .. })
    ));
    assert_eq!(count(&app, CAPTURES, order).await, 1, "provider captures");
    assert_eq!(
        count(&app, INTO_CAPTURED, order).await,
        1,
        "transitions into captured"
    );
    assert_eq!(app.payment(order).await["payment"]["status"], "captured");
    app.cleanup().await;
}

#[tokio::test]
async fn each_test_card_ends_in_its_outcome() {
    let Some(mut app) = spawn_app(&[]).await else {
        return;
    };

    let declined = Uuid::new_v4();
    app.send(
        Uuid::new_v4(),
        &authorize(declined, CARD_DECLINE, Provider::Paypal),
    )
    .await;
    assert!(matches!(
        event_for(&mut app, declined).await,
        Some(Event::PaymentDeclined { .. })
    ));

    let failing = Uuid::new_v4();
    app.send(
        Uuid::new_v4(),
        &authorize(failing, CARD_FAIL_CAPTURE, Provider::Paypal),
    )
    .await;
    assert!(matches!(
        event_for(&mut app, failing).await,
        Some(Event::PaymentAuthorized { .. })
    ));
    app.send(
        Uuid::new_v4(),
        &Command::CapturePayment { order_id: failing },
    )
    .await;
    assert!(matches!(
        event_for(&mut app, failing).await,
        Some(Event::PaymentCaptureFailed { .. })
    ));
    app.send(Uuid::new_v4(), &Command::VoidPayment { order_id: failing })
        .await;
    assert!(matches!(
        event_for(&mut app, failing).await,
        Some(Event::PaymentVoided { .. })
    ));
    assert_eq!(count(&app, CAPTURES, failing).await, 0);

    let silent = Uuid::new_v4();
    app.send(
        Uuid::new_v4(),
        &authorize(silent, CARD_NEVER_CONFIRM, Provider::Stripe),
    )
    .await;
    assert!(app.await_status(silent, "pending", WAIT).await);
    assert_eq!(
        app.next_event(Duration::from_millis(500)).await,
        None,
        "never-confirm answered"
    );
    app.send(Uuid::new_v4(), &Command::VoidPayment { order_id: silent })
        .await;
    assert!(matches!(
        event_for(&mut app, silent).await,
        Some(Event::PaymentVoided { .. })
    ));
    assert_eq!(app.payment(silent).await["payment"]["status"], "voided");
    app.cleanup().await;
}

/// A pending payment (never-confirm card) and its provider reference.
async fn pending_payment(app: &TestApp, provider: Provider) -> (Uuid, String) {
    let order = Uuid::new_v4();
    app.send(
        Uuid::new_v4(),
        &authorize(order, CARD_NEVER_CONFIRM, provider),
    )
    .await;
    assert!(app.await_status(order, "pending", WAIT).await);
    let reference = app.payment(order).await["payment"]["provider_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    (order, reference)
}

fn stripe_body(event_id: &str, event_type: &str, intent: &str) -> String {
    serde_json::json!({"id": event_id, "type": event_type, "data": {"object": {"id": intent}}})
        .to_string()
}

async fn post_stripe(app: &TestApp, body: &str, header: Option<String>) -> StatusCode {
    let mut request = app
        .http
        .post(format!("{}/webhooks/stripe", app.base))
        .body(body.to_owned());
    if let Some(h) = header {
        request = request.header(signature::STRIPE_SIGNATURE, h);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn forged_stale_and_malformed_webhooks_are_refused_and_change_nothing() {
    let Some(app) = spawn_app(&[]).await else {
        return;
    };
    let (order, intent) = pending_payment(&app, Provider::Stripe).await;
    let body = stripe_body(
        "evt_forged_1",
        "payment_intent.amount_capturable_updated",
        &intent,
    );
    let now = chrono::Utc::now().timestamp();

    let forged = signature::stripe_header(b"not the secret", now, body.as_bytes());
    assert_eq!(
        post_stripe(&app, &body, Some(forged)).await,
        StatusCode::UNAUTHORIZED
    );
    let stale = signature::stripe_header(STRIPE_SECRET.as_bytes(), now - 3600, body.as_bytes());
    assert_eq!(
        post_stripe(&app, &body, Some(stale)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_stripe(&app, &body, None).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_stripe(&app, &body, Some("t=x".into())).await,
        StatusCode::BAD_REQUEST
    );

    let (_, paypal_intent) = pending_payment(&app, Provider::Paypal).await;
    let pp_body =
        serde_json::json!({"id": "WH-FORGED", "event_type": "PAYMENT.AUTHORIZATION.CREATED",
        "resource": {"id": paypal_intent}})
        .to_string();
    let time = chrono::Utc::now().to_rfc3339();
    let sig = signature::paypal_signature(b"guess", "tx-1", &time, pp_body.as_bytes());
    let status = app
        .http
        .post(format!("{}/webhooks/paypal", app.base))
        .header(signature::PAYPAL_TRANSMISSION_ID, "tx-1")
        .header(signature::PAYPAL_TRANSMISSION_TIME, &time)
        .header(signature::PAYPAL_TRANSMISSION_SIG, sig)
        .body(pp_body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(app.payment(order).await["payment"]["status"], "pending");
    let recorded = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.webhook_events WHERE $1::uuid IS NOT NULL",
            order,
        )
        .await;
    assert_eq!(recorded, 0, "no forged webhook was recorded");
    app.cleanup().await;
}

#[tokio::test]
async fn a_stripe_event_seen_committed_is_answered_duplicate_without_the_database() {
    let Some(app) = spawn_app(HOLD_WEBHOOKS).await else {
        return;
    };
    let (order, intent) = app.open(CARD_APPROVE, Provider::Stripe).await;
    let body = webhook::body(
        Provider::Stripe,
        "evt_seen",
        Kind::Authorized,
        &intent,
        2590,
        "EUR",
        chrono::Utc::now(),
    );
    let outcome = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value = response.json().await.unwrap();
        json["outcome"].as_str().unwrap().to_owned()
    };
    assert_eq!(outcome(app.stripe(&body).await).await, "applied");
    // The event's row removed behind the service's back: a resend that
    // went to the database would record it (and announce it) again.
    let removed = app
        .scalar::<i64>(
            "WITH gone AS (DELETE FROM {schema}.webhook_events WHERE event_id = 'evt_seen' \
             RETURNING 1) SELECT count(*) FROM gone WHERE $1::uuid IS NOT NULL",
            order,
        )
        .await;
    assert_eq!(removed, 1);

    assert_eq!(outcome(app.stripe(&body).await).await, "duplicate");

    let recorded = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.webhook_events WHERE event_id = 'evt_seen' \
             AND $1::uuid IS NOT NULL",
            order,
        )
        .await;
    assert_eq!(recorded, 0, "the resend reached the database");
    app.cleanup().await;
}

#[tokio::test]
async fn a_valid_webhook_delivered_twice_is_applied_once() {
    let Some(mut app) = spawn_app(HOLD_WEBHOOKS).await else {
        return;
    };
    // The provider authorized; its own webhook is held, the test sends it.
    let (order, intent) = app.open(CARD_APPROVE, Provider::Stripe).await;
    let body = webhook::body(
        Provider::Stripe,
        "evt_twice",
        Kind::Authorized,
        &intent,
        2590,
        "EUR",
        chrono::Utc::now(),
    );
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let response = app.stripe(&body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value = response.json().await.unwrap();
        outcomes.push(json["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcomes, ["applied", "duplicate"]);
    assert!(matches!(
        event_for(&mut app, order).await,
        Some(Event::PaymentAuthorized { .. })
    ));
    assert_eq!(
        app.next_event(Duration::from_millis(500)).await,
        None,
        "announced twice"
    );
    let into_authorized = app
        .scalar::<i64>(
            "SELECT count(*) FROM {schema}.payment_transitions t JOIN {schema}.payments p USING (payment_id) \
             WHERE p.order_id = $1 AND t.to_status = 'authorized'",
            order,
        )
        .await;
    assert_eq!(into_authorized, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_redelivered_command_is_applied_once_and_a_poison_one_is_dead_lettered() {
    let Some(mut app) = spawn_app(&[]).await else {
        return;
    };
    let order = Uuid::new_v4();
    let id = Uuid::new_v4();
    let command = authorize(order, CARD_APPROVE, Provider::Stripe);
    app.send(id, &command).await;
    app.send(id, &command).await;
    assert!(matches!(
        event_for(&mut app, order).await,
        Some(Event::PaymentAuthorized { .. })
    ));
    assert_eq!(
        app.scalar::<i64>(
            "SELECT count(*) FROM {schema}.payments WHERE order_id = $1",
            order
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar::<i64>(
            "SELECT count(*) FROM {schema}.inbox WHERE message_id = $1",
            id
        )
        .await,
        1
    );

    // Not a command at all: it can never be handled, so it goes to the DLQ.
    let connection = amqp::connect(&app.amqp_url, "test-poison").await.unwrap();
    let mut publisher = amqp::Publisher::open(&connection).await.unwrap();
    let poison = amqp::Outgoing {
        id: Uuid::new_v4(),
        queue: app.queues.commands.clone(),
        kind: "nonsense".into(),
        payload: b"{\"type\":\"refund_everything\"}".to_vec(),
        traceparent: None,
    };
    publisher.publish_batch(&[poison]).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let mut dead = 0;
    while std::time::Instant::now() < deadline {
        dead = amqp::depths(&connection, &app.queues.commands)
            .await
            .unwrap()
            .1;
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead, 1, "the poison message is in the dead-letter queue");
    connection.close(200, "OK".into()).await.ok();
    app.cleanup().await;
}

#[tokio::test]
async fn the_lab_signing_oracle_signs_like_the_provider_and_exists_only_in_the_lab() {
    let Some(off) = spawn_app(&[]).await else {
        return;
    };
    let status = off
        .http
        .post(format!("{}/lab/sign/stripe", off.base))
        .bearer_auth(LAB_TOKEN)
        .json(&serde_json::json!({"body": "{}"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
    off.cleanup().await;

    let mut lab = vec![("LAB_ENDPOINTS", "true")];
    lab.extend_from_slice(HOLD_WEBHOOKS);
    let Some(app) = spawn_app(&lab).await else {
        return;
    };
    let (order, intent) = app.open(CARD_APPROVE, Provider::Paypal).await;
    let body = webhook::body(
        Provider::Paypal,
        "WH-ORACLE",
        Kind::Authorized,
        &intent,
        2590,
        "EUR",
        chrono::Utc::now(),
    );
    let sign = || {
        app.http
            .post(format!("{}/lab/sign/paypal", app.base))
            .json(&serde_json::json!({"body": body}))
    };
    // It signs anything, so only the lab's admin may ask.
    let anonymous = sign().send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let signed = (*app).send(sign().bearer_auth(LAB_TOKEN)).await.body;
    let mut request = app
        .http
        .post(format!("{}/webhooks/paypal", app.base))
        .body(body);
    for (k, v) in signed["headers"].as_object().unwrap() {
        request = request.header(k, v.as_str().unwrap());
    }
    assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    assert!(app.await_status(order, "authorized", WAIT).await);
    app.cleanup().await;
}

#[tokio::test]
async fn a_scheduled_delivery_wakes_the_sender_once_committed_without_a_poll() {
    // No poll for ten minutes: only the announcement of the authorization's
    // webhook (NOTIFY on commit) can get it sent.
    let Some(app) = spawn_app(&[("PROVIDER_POLL_MS", "600000")]).await else {
        return;
    };
    let (order, _) = app.open(CARD_APPROVE, Provider::Stripe).await;
    assert!(
        app.await_status(order, "authorized", WAIT).await,
        "the provider's webhook was never sent"
    );
    app.cleanup().await;
}
