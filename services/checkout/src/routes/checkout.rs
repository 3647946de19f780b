//! `POST /checkout` starts an order's saga (202, then it runs on its own;
//! the same `Idempotency-Key` again answers 200 with the same saga) and
//! `GET /checkout/{order_id}` shows its state and history.
//!
//! Who ordered: the BFF passes the verified customer as `X-User-Id` (a
//! client's own copy never gets through it). With it, the order records
//! its customer, only that customer can read it (anyone else gets the same
//! 404 as for an order that does not exist), and Idempotency-Keys are
//! scoped per customer: another customer sending the same key starts an
//! order of their own, never a replay of someone else's. Without it (the
//! lab, talking to checkout directly) orders have no customer and share
//! one key space, as before.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use storefront_kit::headers::{IDEMPOTENT_REPLAYED, IdempotencyKey, KeyError, verified_customer};
use storefront_payments::provider::luhn_valid;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::contract::CheckoutBody;
use crate::store::{Created, NewSaga, SagaRow, StepRow};

/// Most lines one order may have (catalog takes up to 100 per reservation).
pub const MAX_ITEMS: usize = 50;
/// Most units of one line.
pub const MAX_QUANTITY: i32 = 1000;
/// Largest product id accepted: ids are positive, and no client written in
/// JavaScript can name one above 2^53 − 1 exactly, so anything larger is a
/// bad id, refused at once rather than looked up during the saga.
pub const MAX_PRODUCT_ID: i64 = (1 << 53) - 1;

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match IdempotencyKey::from_headers(headers) {
        Ok(key) => Ok(key.as_str().to_owned()),
        Err(KeyError::Missing) => Err(ApiError::KeyMissing),
        Err(KeyError::Malformed(_)) => Err(ApiError::KeyMalformed),
    }
}

/// The customer the BFF verified, if the request came through it.
fn customer(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    verified_customer(headers).map_err(|_| ApiError::UserIdMalformed)
}

impl CheckoutBody {
    /// Validates and puts the request in canonical form (items by product id).
    fn into_new_saga(
        self,
        idempotency_key: String,
        customer_id: Option<Uuid>,
    ) -> Result<NewSaga, ApiError> {
        let mut items = self.items;
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(ApiError::Invalid(format!(
                "items must hold between 1 and {MAX_ITEMS} lines"
            )));
        }
        if let Some(bad) = items
            .iter()
            .find(|i| !(1..=MAX_QUANTITY).contains(&i.quantity))
        {
            return Err(ApiError::Invalid(format!(
                "quantity must be between 1 and {MAX_QUANTITY} (product {})",
                bad.product_id
            )));
        }
        if let Some(bad) = items
            .iter()
            .find(|i| !(1..=MAX_PRODUCT_ID).contains(&i.product_id))
        {
            return Err(ApiError::Invalid(format!(
                "product_id must be between 1 and {MAX_PRODUCT_ID}, got {}",
                bad.product_id
            )));
        }
        items.sort_unstable();
        if let Some(w) = items
            .windows(2)
            .find(|w| w[0].product_id == w[1].product_id)
        {
            return Err(ApiError::Invalid(format!(
                "product {} appears more than once",
                w[0].product_id
            )));
        }
        if !luhn_valid(&self.card_number) {
            return Err(ApiError::Invalid(
                "card_number is not a valid card number".into(),
            ));
        }
        if self.currency != "EUR" {
            return Err(ApiError::Invalid("currency must be EUR".into()));
        }
        let request = json!({
            "items": items,
            "card_number": self.card_number,
            "provider": self.provider,
            "currency": self.currency,
        });
        Ok(NewSaga {
            idempotency_key,
            customer_id,
            request,
            items,
            card_number: self.card_number,
            provider: self.provider,
            currency: self.currency,
        })
    }
}

/// The saga as clients see it.
fn view(saga: &SagaRow, history: &[StepRow]) -> Value {
    json!({
        "order_id": saga.order_id,
        "customer_id": saga.customer_id,
        "state": saga.state,
        "terminal": saga.state().is_terminal(),
        "failure": saga.failure,
        "items": &*saga.items,
        "provider": saga.provider,
        "amount_cents": saga.amount_cents,
        "currency": saga.currency,
        "version": saga.version,
        "created_at": saga.created_at,
        "updated_at": saga.updated_at,
        "finished_at": saga.finished_at,
        "history": history,
    })
}

/// `POST /checkout`.
#[utoipa::path(post, path = "/checkout", tag = "checkout",
    params(
        ("Idempotency-Key" = String, Header, description = "1-255 characters of A-Z a-z 0-9 _ . : -; a retry sends the same one"),
        ("X-User-Id" = Option<uuid::Uuid>, Header, description = "The verified customer, set by the BFF"),
    ),
    request_body = CheckoutBody,
    responses(
        (status = 202, description = "The order was accepted; the saga runs", body = super::openapi::CheckoutView,
            headers(("Location" = String, description = "/checkout/{order_id}"))),
        (status = 200, description = "A retry with the same key and body: the order as it is now (Idempotent-Replayed: true)", body = super::openapi::CheckoutView,
            headers(("Location" = String, description = "/checkout/{order_id}"))),
        (status = 400, description = "Idempotency-Key or X-User-Id missing or malformed, or the body is not the JSON this takes", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::BodyNotJson,
        (status = 422, description = "The order is invalid, or the key was used with another body", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CheckoutBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let customer = customer(&headers)?;
    let key = idempotency_key(&headers)?;
    let Json(body) = body?;
    let new = body.into_new_saga(key, customer)?;
    let store = &state.orchestrator.store;
    let (status, saga, history) = match store.create(&new, state.saga.reserve_timeout).await? {
        // The saga as created, with its one history row: the response shows
        // the order as accepted, whatever its first step does meanwhile.
        Created::New(saga, first) => {
            state.orchestrator.kick_saga(saga.clone());
            (StatusCode::ACCEPTED, saga, vec![first])
        }
        Created::Replay(saga, history) => (StatusCode::OK, saga, history),
        Created::KeyReused => return Err(ApiError::KeyReused),
    };
    tracing::Span::current().record("order_id", tracing::field::display(saga.order_id));
    let mut response = (status, Json(view(&saga, &history))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/checkout/{}", saga.order_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if status == StatusCode::OK {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /checkout/{order_id}`: with `X-User-Id`, only the customer's own
/// orders; another's is the same 404 as a missing one.
#[utoipa::path(get, path = "/checkout/{order_id}", tag = "checkout",
    params(
        ("order_id" = uuid::Uuid, Path, description = "The order id"),
        ("X-User-Id" = Option<uuid::Uuid>, Header, description = "The verified customer, set by the BFF: only their own orders"),
    ),
    responses(
        (status = 200, description = "The order and its saga history", body = super::openapi::CheckoutView),
        (status = 400, description = "The id is not a UUID, or X-User-Id is malformed", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No order with this id (for this customer)", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    order_id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let customer = customer(&headers)?;
    let order_id = storefront_kit::path::recorded_uuid(order_id, "order_id")?;
    let store = &state.orchestrator.store;
    let saga = store
        .load(order_id)
        .await?
        .filter(|saga| visible_to(saga.customer_id, customer))
        .ok_or(ApiError::NotFound(order_id))?;
    let history = store.history(order_id).await?;
    Ok(Json(view(&saga, &history)))
}

/// Whether a reader sees an order: the lab (no `X-User-Id`) sees every
/// order; a customer only their own.
fn visible_to(owner: Option<Uuid>, reader: Option<Uuid>) -> bool {
    reader.is_none() || owner == reader
}

#[cfg(test)]
mod tests {
    use storefront_kit::headers::{IDEMPOTENCY_KEY, USER_ID};

    use super::*;

    fn parse(json: &str) -> Result<NewSaga, String> {
        let body: CheckoutBody = serde_json::from_str(json).map_err(|e| e.to_string())?;
        body.into_new_saga("k".into(), None)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_malformed_x_user_id_is_checkouts_own_problem() {
        let mut headers = HeaderMap::new();
        assert_eq!(customer(&headers).unwrap(), None);
        headers.insert(USER_ID, HeaderValue::from_static("alice"));
        assert!(matches!(customer(&headers), Err(ApiError::UserIdMalformed)));
    }

    #[test]
    fn a_customer_sees_only_their_own_orders_and_the_lab_sees_all() {
        let (alice, bob) = (Some(Uuid::new_v4()), Some(Uuid::new_v4()));
        assert!(visible_to(alice, alice));
        assert!(!visible_to(alice, bob));
        assert!(!visible_to(None, bob), "a lab order is no customer's");
        assert!(visible_to(alice, None));
        assert!(visible_to(None, None));
    }

    #[test]
    fn a_valid_request_is_put_in_canonical_form() {
        let saga = parse(
            r#"{"items":[{"product_id":9,"quantity":1},{"product_id":2,"quantity":3}],
                "card_number":"4242424242424242","provider":"paypal"}"#,
        )
        .unwrap();
        let ids: Vec<i64> = saga.items.iter().map(|i| i.product_id).collect();
        assert_eq!(ids, [2, 9]);
        assert_eq!(saga.request["currency"], "EUR");
        assert_eq!(saga.request["items"][0]["product_id"], 2);
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for (json, why) in [
            (
                r#"{"items":[],"card_number":"4242424242424242","provider":"stripe"}"#,
                "items",
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":0}],"card_number":"4242424242424242","provider":"stripe"}"#,
                "quantity",
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":1},{"product_id":1,"quantity":2}],"card_number":"4242424242424242","provider":"stripe"}"#,
                "more than once",
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":1}],"card_number":"4242424242424241","provider":"stripe"}"#,
                "card",
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":1}],"card_number":"4242424242424242","provider":"stripe","currency":"USD"}"#,
                "EUR",
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":1}],"card_number":"4242424242424242","provider":"visa"}"#,
                "unknown variant",
            ),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn product_ids_outside_1_to_2_pow_53_and_absurd_quantities_are_refused() {
        let line = |product_id: i64, quantity: i64| {
            format!(
                r#"{{"items":[{{"product_id":{product_id},"quantity":{quantity}}}],"card_number":"4242424242424242","provider":"stripe"}}"#
            )
        };
        for product_id in [0, -1, i64::MAX, MAX_PRODUCT_ID + 1] {
            let err = parse(&line(product_id, 1)).unwrap_err();
            assert!(err.contains("product_id"), "{product_id}: {err}");
        }
        for quantity in [-1, 1001, i64::from(i32::MAX)] {
            let err = parse(&line(1, quantity)).unwrap_err();
            assert!(err.contains("quantity"), "{quantity}: {err}");
        }
        assert!(parse(&line(MAX_PRODUCT_ID, 1000)).is_ok());
    }

    #[test]
    fn idempotency_keys_are_validated() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            idempotency_key(&headers),
            Err(ApiError::KeyMissing)
        ));
        headers.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_static("order-42:attempt-1"),
        );
        assert_eq!(idempotency_key(&headers).unwrap(), "order-42:attempt-1");
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("has space"));
        assert!(matches!(
            idempotency_key(&headers),
            Err(ApiError::KeyMalformed)
        ));
    }
}
