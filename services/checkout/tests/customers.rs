//! Whose order is it (issue 11): through the BFF an order carries the
//! verified customer (`X-User-Id`); a customer reads only their own orders
//! (404 for anyone else's, as for a missing one), and an Idempotency-Key is
//! scoped per customer, so another customer replaying it gets an order of
//! their own, never the first customer's. Without `X-User-Id` (the lab,
//! direct) nothing changes.

mod common;

use std::time::Duration;

use common::{key, order, spawn_shop};
use reqwest::StatusCode;
use serde_json::Value;
use storefront_payments::provider::CARD_APPROVE;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

async fn post_as(
    shop: &common::Shop,
    user: Option<&str>,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = shop
        .http
        .post(format!("{}/checkout", shop.base))
        .header("idempotency-key", key)
        .json(body);
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get_as(shop: &common::Shop, user: Option<&str>, order_id: &str) -> (StatusCode, Value) {
    let mut request = shop.http.get(format!("{}/checkout/{order_id}", shop.base));
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn rows(shop: &common::Shop) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".sagas",
        shop.checkout_schema
    ))
    .fetch_one(&shop.admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_order_records_its_customer_and_only_that_customer_can_read_it() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let (alice, bob) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let (status, created) = post_as(&shop, Some(&alice), &key(), &order(&[7], CARD_APPROVE)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["customer_id"], alice.as_str());
    let id = created["order_id"].as_str().unwrap().to_owned();

    let (own, body) = get_as(&shop, Some(&alice), &id).await;
    assert_eq!(own, StatusCode::OK);
    assert_eq!(body["order_id"], id.as_str());

    let (other, problem) = get_as(&shop, Some(&bob), &id).await;
    let (missing, missing_problem) = get_as(&shop, Some(&bob), &Uuid::new_v4().to_string()).await;
    assert_eq!(
        (other, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(problem["type"], missing_problem["type"], "{problem}");
    assert!(problem.get("customer_id").is_none() && problem.get("state").is_none());

    let (lab, _) = get_as(&shop, None, &id).await;
    assert_eq!(lab, StatusCode::OK, "direct (lab) access is unchanged");

    let stored: Option<Uuid> = sqlx::query_scalar(&format!(
        "SELECT customer_id FROM \"{}\".sagas WHERE order_id = $1",
        shop.checkout_schema
    ))
    .bind(Uuid::parse_str(&id).unwrap())
    .fetch_one(&shop.admin)
    .await
    .unwrap();
    assert_eq!(stored.map(|u| u.to_string()), Some(alice));
    shop.finished(&id, WAIT).await.unwrap();
    shop.cleanup().await;
}

#[tokio::test]
async fn a_lab_order_has_no_customer_and_no_customer_can_read_it() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let (status, created) = post_as(&shop, None, &key(), &order(&[7], CARD_APPROVE)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(created["customer_id"], Value::Null);
    let id = created["order_id"].as_str().unwrap().to_owned();
    let (as_customer, _) = get_as(&shop, Some(&Uuid::new_v4().to_string()), &id).await;
    assert_eq!(as_customer, StatusCode::NOT_FOUND);
    shop.finished(&id, WAIT).await.unwrap();
    shop.cleanup().await;
}

#[tokio::test]
async fn another_customer_replaying_a_key_gets_an_order_of_their_own() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    let (alice, bob) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let (k, body) = (key(), order(&[7], CARD_APPROVE));
    let (first, a) = post_as(&shop, Some(&alice), &k, &body).await;
    let (again, a2) = post_as(&shop, Some(&alice), &k, &body).await;
    assert_eq!((first, again), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(
        a["order_id"], a2["order_id"],
        "the owner's retry is a replay"
    );

    let (theirs, b) = post_as(&shop, Some(&bob), &k, &body).await;
    assert_eq!(theirs, StatusCode::ACCEPTED, "{b}");
    assert_ne!(a["order_id"], b["order_id"]);
    assert_eq!(b["customer_id"], bob.as_str());
    // A different body under bob's copy of the key is bob's conflict only.
    let (reused, problem) = post_as(&shop, Some(&bob), &k, &order(&[8], CARD_APPROVE)).await;
    assert_eq!(reused, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !problem
            .to_string()
            .contains(a["order_id"].as_str().unwrap())
    );
    // The lab's key space is a third one.
    let (lab, c) = post_as(&shop, None, &k, &body).await;
    assert_eq!(lab, StatusCode::ACCEPTED);
    assert_ne!(c["order_id"], a["order_id"]);
    assert_eq!(rows(&shop).await, 3);
    for saga in [&a, &b, &c] {
        shop.finished(saga["order_id"].as_str().unwrap(), WAIT)
            .await
            .unwrap();
    }
    shop.cleanup().await;
}

#[tokio::test]
async fn a_malformed_x_user_id_is_400_and_stores_nothing() {
    let Some(shop) = spawn_shop(&[]).await else {
        return;
    };
    for bad in ["alice", "", "1234", "00000000-0000-0000-0000-00000000000z"] {
        let (status, problem) = post_as(&shop, Some(bad), &key(), &order(&[7], CARD_APPROVE)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {problem}");
        assert_eq!(problem["type"], "/problems/user-id-malformed");
        let (read, _) = get_as(&shop, Some(bad), &Uuid::new_v4().to_string()).await;
        assert_eq!(read, StatusCode::BAD_REQUEST);
    }
    assert_eq!(rows(&shop).await, 0);
    shop.cleanup().await;
}
