//! Hostile numbers against a real checkout (issue 11 item 5): bad product
//! ids and absurd quantities are 422 at once with nothing stored; a price
//! that would wrap the order total fails the saga before anything is
//! reserved or charged (checkout asks catalog to refuse a total above its
//! limit); and should catalog reserve such an order anyway, nothing is
//! charged and the reservation is released.

mod common;

use std::time::Duration;

use common::{Shop, UNCHECKED_WRAPPING_PRODUCT, WRAPPING_PRICE_PRODUCT, key, path, spawn_shop};
use reqwest::StatusCode;
use serde_json::json;
use storefront_checkout::saga::{Failure, expected_path};
use storefront_payments::provider::CARD_APPROVE;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn bad_product_ids_and_absurd_quantities_are_422_at_once_and_store_nothing() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let lines = [
        (0, 1),
        (-1, 1),
        (i64::MAX, 1),
        (1, 0),
        (1, -1),
        (1, 1001),
        (1, i64::from(i32::MAX)),
    ];
    for (product_id, quantity) in lines {
        let body = json!({
            "items": [{"product_id": product_id, "quantity": quantity}],
            "card_number": CARD_APPROVE,
            "provider": "stripe",
        });
        let (status, problem) = shop.checkout(&key(), &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{product_id}×{quantity}: {problem}"
        );
        assert_eq!(problem["status"], 422);
    }
    let sagas: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".sagas",
        shop.checkout_schema
    ))
    .fetch_one(&shop.admin)
    .await
    .unwrap();
    assert_eq!(sagas, 0);
    assert_eq!(shop.catalog.ledger.lock().unwrap().takes, 0);
    shop.cleanup().await;
}

/// Orders 4 of `product`, waits for the saga's end, and checks it ended in
/// `failure`'s path with no amount and no payment: the order's id.
async fn wrapping_order_fails_uncharged(shop: &Shop, product: i64, failure: Failure) -> Uuid {
    let body = json!({
        "items": [{"product_id": product, "quantity": 4}],
        "card_number": CARD_APPROVE,
        "provider": "stripe",
    });
    let (status, saga) = shop.checkout(&key(), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{saga}");
    let order_id = saga["order_id"].as_str().unwrap().to_owned();

    let done = shop
        .finished(&order_id, WAIT)
        .await
        .expect("the saga did not finish");

    let expected: Vec<String> = expected_path(Some(failure))
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(path(&done), expected, "{done}");
    assert!(done["amount_cents"].is_null(), "{done}");
    let payments: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".payments",
        shop.payments_schema
    ))
    .fetch_one(&shop.admin)
    .await
    .unwrap();
    assert_eq!(payments, 0);
    order_id.parse().unwrap()
}

#[tokio::test]
async fn a_price_that_would_wrap_the_total_fails_the_saga_before_reserving_or_charging() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let order =
        wrapping_order_fails_uncharged(&shop, WRAPPING_PRICE_PRODUCT, Failure::OutOfStock).await;
    assert_eq!(shop.catalog.reservation(order), None);
    shop.cleanup().await;
}

#[tokio::test]
async fn a_wrapping_total_that_catalog_reserved_anyway_is_released_and_never_charged() {
    let Some(shop) = spawn_shop(&[("SAGA_RESERVE_TIMEOUT_MS", "1500")]).await else {
        return;
    };
    let order = wrapping_order_fails_uncharged(
        &shop,
        UNCHECKED_WRAPPING_PRODUCT,
        Failure::ReservationFailed,
    )
    .await;
    assert_eq!(shop.catalog.reservation(order), Some(false), "not released");
    shop.cleanup().await;
}
