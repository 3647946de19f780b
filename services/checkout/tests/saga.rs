//! The checkout saga end to end: real checkout and payments over a real
//! RabbitMQ and Postgres, a fake catalog. Each failure path must end in its
//! named compensation; a crash of the orchestrator mid-saga must resume.

mod common;

use std::time::Duration;

use common::{PRICE, SOLD_OUT, key, order, path, spawn_shop};
use reqwest::StatusCode;
use storefront_checkout::saga::{Failure, expected_path};
use storefront_payments::provider::{
    CARD_APPROVE, CARD_DECLINE, CARD_FAIL_CAPTURE, CARD_NEVER_CONFIRM,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn names(failure: Option<Failure>) -> Vec<String> {
    expected_path(failure)
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn every_card_reaches_its_terminal_state_through_its_compensation() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let cases = [
        (order(&[1, 2], CARD_APPROVE), None, Some(true)),
        (
            order(&[1, SOLD_OUT], CARD_APPROVE),
            Some(Failure::OutOfStock),
            None,
        ),
        (
            order(&[3], CARD_DECLINE),
            Some(Failure::PaymentDeclined),
            Some(false),
        ),
        (
            order(&[4], CARD_FAIL_CAPTURE),
            Some(Failure::CaptureFailed),
            Some(false),
        ),
        (
            order(&[5], CARD_NEVER_CONFIRM),
            Some(Failure::AuthorizationTimeout),
            Some(false),
        ),
    ];
    let mut placed = Vec::new();
    for (body, failure, reservation) in &cases {
        let (status, saga) = shop.checkout(&key(), body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{saga}");
        placed.push((
            saga["order_id"].as_str().unwrap().to_owned(),
            *failure,
            *reservation,
        ));
    }
    for (order_id, failure, reservation) in placed {
        let saga = shop
            .finished(&order_id, WAIT)
            .await
            .expect("terminal in time");
        assert_eq!(path(&saga), names(failure), "{saga}");
        assert_eq!(saga["failure"].as_str(), failure.map(Failure::as_str));
        let id: Uuid = order_id.parse().unwrap();
        assert_eq!(
            shop.catalog.reservation(id),
            reservation,
            "catalog's reservation of {order_id}"
        );
        if failure.is_none() {
            assert_eq!(saga["amount_cents"], 2 * 2 * PRICE);
        }
    }
    assert_eq!(
        shop.catalog.ledger.lock().unwrap().takes,
        4,
        "stock taken once per reserved order"
    );
    shop.cleanup().await;
}

#[tokio::test]
async fn the_same_idempotency_key_is_the_same_saga_and_a_reused_key_is_refused() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let k = key();
    let body = order(&[7], CARD_APPROVE);
    let (first, a) = shop.checkout(&k, &body).await;
    let (second, b) = shop.checkout(&k, &body).await;
    assert_eq!((first, second), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(a["order_id"], b["order_id"]);
    let (reused, problem) = shop.checkout(&k, &order(&[8], CARD_APPROVE)).await;
    assert_eq!(reused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
    let (bad, _) = shop
        .checkout(&key(), &order(&[7], "4242424242424241"))
        .await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    let saga = shop
        .finished(a["order_id"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(saga["state"], "completed");
    // A replay once the saga has moved shows it as it is now, history and all.
    let (again, c) = shop.checkout(&k, &body).await;
    assert_eq!(again, StatusCode::OK);
    assert_eq!(
        (&c["state"], &c["version"]),
        (&saga["state"], &saga["version"])
    );
    assert_eq!(c["history"], saga["history"]);
    assert_eq!(path(&c).len(), 4, "{c}");
    shop.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_catalog_times_out_into_a_release() {
    let Some(shop) = spawn_shop(&[
        ("CATALOG_URLS", "http://127.0.0.1:1"),
        ("SAGA_RESERVE_TIMEOUT_MS", "400"),
    ])
    .await
    else {
        return;
    };
    let (status, saga) = shop.checkout(&key(), &order(&[1], CARD_APPROVE)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The release can't reach catalog either: the compensation keeps being
    // retried, and the saga waits in releasing_stock rather than lying.
    let order_id = saga["order_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = serde_json::Value::Null;
    while std::time::Instant::now() < deadline {
        seen = shop.saga(&order_id).await;
        if seen["state"] == "releasing_stock" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen["state"], "releasing_stock", "{seen}");
    assert_eq!(seen["failure"], "reservation_failed");
    shop.cleanup().await;
}

#[tokio::test]
async fn a_crashed_orchestrator_resumes_every_saga_after_restart() {
    let Some(mut shop) = spawn_shop(&[]).await else {
        return;
    };
    let mut ids = Vec::new();
    for (i, card) in [CARD_APPROVE, CARD_DECLINE, CARD_FAIL_CAPTURE, CARD_APPROVE]
        .iter()
        .enumerate()
    {
        let (status, saga) = shop.checkout(&key(), &order(&[10 + i as i64], card)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(saga["order_id"].as_str().unwrap().to_owned());
    }
    // Crash once every saga has sent its first command to payments (left
    // `reserving`): a crash before that would leave payments nothing to
    // answer, and under CI load the orders can still be reserving here.
    let deadline = std::time::Instant::now() + WAIT;
    for id in &ids {
        while shop.saga(id).await["state"] == "reserving" && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    shop.crash_checkout().await;
    // Payments keeps answering meanwhile: its events wait in the queue. How
    // many depends on how far each saga got before the crash (all of them
    // may already have passed payments on a fast machine), so this is the
    // scenario's context; the property is that every saga resumes below.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while shop.events_waiting().await == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!(
        "events queued while checkout was down: {}",
        shop.events_waiting().await
    );
    shop.start_checkout().await;
    let expected = [
        None,
        Some(Failure::PaymentDeclined),
        Some(Failure::CaptureFailed),
        None,
    ];
    for (order_id, failure) in ids.iter().zip(expected) {
        let saga = shop
            .finished(order_id, WAIT)
            .await
            .expect("resumed and terminal");
        assert_eq!(path(&saga), names(failure), "{saga}");
    }
    assert_eq!(
        shop.catalog.ledger.lock().unwrap().takes,
        4,
        "no reservation taken twice"
    );
    shop.cleanup().await;
}

#[tokio::test]
async fn the_authorization_timeout_does_not_run_while_the_command_waits_in_the_outbox() {
    // Issue 12, defect c: checkout's broker unreachable (a paused or dead
    // RabbitMQ), so the authorize command sits in its outbox for longer than
    // the authorization timeout (3 s here). The timeout measures from when
    // the command was published: once the broker is back the order must
    // complete, not fail with `authorization_timeout`.
    let Some(mut shop) = spawn_shop(&[("AMQP_URL", "amqp://nobody:nothing@127.0.0.1:1/%2f")]).await
    else {
        return;
    };
    let (status, saga) = shop.checkout(&key(), &order(&[7], CARD_APPROVE)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{saga}");
    let order_id = saga["order_id"].as_str().unwrap().to_owned();
    // Reserved, the command written to the outbox and never published...
    let deadline = std::time::Instant::now() + WAIT;
    while shop.saga(&order_id).await["state"] != "awaiting_authorization" {
        assert!(std::time::Instant::now() < deadline, "never reserved");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // ... and it stays waiting for twice the timeout: nothing times out.
    let waited = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < waited {
        let seen = shop.saga(&order_id).await;
        assert_eq!(seen["state"], "awaiting_authorization", "{seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The broker "comes back": checkout restarted on the real one.
    shop.crash_checkout().await;
    shop.unset_checkout_var("AMQP_URL");
    shop.start_checkout().await;
    let saga = shop
        .finished(&order_id, WAIT)
        .await
        .expect("terminal once the broker is back");
    assert_eq!(path(&saga), names(None), "{saga}");
    shop.cleanup().await;
}
