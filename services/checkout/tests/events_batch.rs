//! Payments' events applied in batches (one transaction for the events a
//! consumer holds at once), against a real Postgres: each event once, a
//! duplicate inside the batch included, and an event that loses an OCC race
//! inside the batch applied again on its own, against a fresh read.

mod common;

use std::time::Duration;

use common::Checkout;
use serde_json::json;
use sqlx::PgPool;
use storefront_checkout::catalog::Item;
use storefront_checkout::saga::{Input, State, Timeouts};
use storefront_checkout::store::{Applied, Created, NewSaga, SagaRow, Store};
use storefront_kit::testing::{self, TestEnv};
use storefront_payments::contract::Provider;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// A store on a fresh schema, with a saga already awaiting authorization.
async fn saga_awaiting_authorization() -> Option<(TestEnv, Store, SagaRow)> {
    let env = TestEnv::create::<Checkout>().await?;
    let pool: PgPool = env.schema().pool(4).await;
    let timeouts = Timeouts {
        authorization: Duration::from_secs(60),
        resend_after: Duration::from_secs(60),
    };
    let store = Store::new(pool, timeouts, Duration::from_secs(60), "commands".into());
    let items = vec![Item {
        product_id: 7,
        quantity: 2,
    }];
    let new = NewSaga {
        idempotency_key: Uuid::new_v4().to_string(),
        customer_id: None,
        request: json!({"items": items}),
        items,
        card_number: "4242424242424242".into(),
        provider: Provider::Stripe,
        currency: "EUR".into(),
    };
    let Created::New(saga, _) = store.create(&new, Duration::from_secs(60)).await.unwrap() else {
        panic!("a new key makes a new saga");
    };
    let moved = store.apply_at(&saga, Input::Reserved, Some(2500)).await;
    assert!(matches!(moved, Ok(Applied::Moved(_))), "{moved:?}");
    let saga = store.load(saga.order_id).await.unwrap().unwrap();
    assert_eq!(saga.state(), State::AwaitingAuthorization);
    Some((env, store, saga))
}

async fn count(env: &TestEnv, sql: &str, id: Uuid) -> i64 {
    let schema = env.schema();
    sqlx::query_scalar(&schema.sql(sql))
        .bind(id)
        .fetch_one(&schema.admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_applies_each_event_once_a_duplicate_inside_it_included() {
    let Some((env, store, saga)) = saga_awaiting_authorization().await else {
        return;
    };
    let (order, message) = (saga.order_id, Uuid::new_v4());
    let event = (
        order,
        Input::PaymentAuthorized,
        (message, "payment_authorized"),
    );
    let batch = [
        (event.0, event.1, event.2, tracing::Span::none()),
        (event.0, event.1, event.2, tracing::Span::none()),
    ];

    let applied = store.apply_events(&batch).await.unwrap();

    assert!(matches!(applied[0], Applied::Moved(_)), "{applied:?}");
    assert_eq!(applied[1], Applied::Duplicate);
    let now = store.load(order).await.unwrap().unwrap();
    assert_eq!(now.state(), State::AwaitingCapture);
    assert_eq!(now.version, saga.version + 1);
    let captures = "SELECT count(*) FROM {schema}.outbox \
         WHERE kind = 'capture_payment' AND payload->>'order_id' = $1::text";
    assert_eq!(count(&env, captures, order).await, 1);
    store.pool.close().await;
    env.schema.unwrap().drop().await;
}

#[tokio::test]
async fn an_event_that_loses_a_race_inside_a_batch_is_applied_again_after_it() {
    let Some((env, store, saga)) = saga_awaiting_authorization().await else {
        return;
    };
    let (order, message) = (saga.order_id, Uuid::new_v4());
    // Another transition holds the saga's row (and will change its
    // version) while the batch reads the saga and tries to write it.
    let admin = env.schema().admin.clone();
    let mut other = admin.begin().await.unwrap();
    sqlx::query(
        &env.schema()
            .sql("UPDATE {schema}.sagas SET version = version + 1 WHERE order_id = $1"),
    )
    .bind(order)
    .execute(&mut *other)
    .await
    .unwrap();
    let holder: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *other)
        .await
        .unwrap();
    let batch_store = store.clone();
    let batch = tokio::spawn(async move {
        let events = [(
            order,
            Input::PaymentAuthorized,
            (message, "payment_authorized"),
            tracing::Span::none(),
        )];
        batch_store.apply_events(&events).await
    });
    // Wait until the batch's write waits for the other transaction.
    let waiting = testing::until(WAIT, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' \
             AND transactionid::text = $1 AND NOT granted",
        )
        .bind(&holder)
        .fetch_one(&admin)
        .await
        .unwrap();
        n > 0
    })
    .await;
    assert!(waiting, "the batch never waited for the saga's row");
    other.commit().await.unwrap();

    let applied = batch.await.unwrap().unwrap();

    assert!(matches!(applied[..], [Applied::Moved(_)]), "{applied:?}");
    let now = store.load(order).await.unwrap().unwrap();
    assert_eq!(now.state(), State::AwaitingCapture);
    assert_eq!(now.version, saga.version + 2, "moved once, after the other");
    let inbox = "SELECT count(*) FROM {schema}.inbox WHERE message_id = $1";
    assert_eq!(count(&env, inbox, message).await, 1);
    let steps = "SELECT count(*) FROM {schema}.saga_steps \
         WHERE order_id = $1 AND cause = 'payment_authorized'";
    assert_eq!(count(&env, steps, order).await, 1);
    store.pool.close().await;
    env.schema.unwrap().drop().await;
}
