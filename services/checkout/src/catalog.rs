//! The catalog as the saga calls it, over HTTP: price the items, reserve
//! them under a reservation id derived from the order (so a retry is the
//! same reservation), release them as the compensation. Replicas are tried
//! in turn, starting from a rotating one; a replica that doesn't answer or
//! answers 5xx is a reason to try the next, an answer is final.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

pub use crate::contract::Item;

/// Largest order total, in minor units (100 million EUR). A total is
/// computed with checked arithmetic and refused beyond this, so a price
/// that slipped past catalog's own bounds can never wrap into a small
/// charge.
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000_000;

/// Adds one line (`price_cents` × `quantity`) to `total`; `None` when the
/// price is negative, the arithmetic overflows or the sum passes
/// [`MAX_AMOUNT_CENTS`].
pub fn add_line(total: i64, price_cents: i64, quantity: i32) -> Option<i64> {
    if price_cents < 0 {
        return None;
    }
    price_cents
        .checked_mul(i64::from(quantity))
        .and_then(|line| total.checked_add(line))
        .filter(|sum| (0..=MAX_AMOUNT_CENTS).contains(sum))
}

/// What catalog said to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Held (now, or by an earlier attempt of the same id); the total.
    Reserved {
        /// Σ price × quantity, in minor units.
        amount_cents: i64,
    },
    /// Refused; nothing held. The detail says why (out of stock, unknown product).
    Refused(String),
}

/// No replica gave a final answer; the step is retried later.
#[derive(Debug, thiserror::Error)]
#[error("catalog unavailable: {0}")]
pub struct Unavailable(pub String);

/// The reservation id for an order: the order id itself, so every attempt
/// (after a crash, by the sweeper) reserves under the same id.
pub fn reservation_id(order_id: Uuid) -> Uuid {
    order_id
}

#[derive(Deserialize)]
struct Product {
    price_cents: i64,
}

/// A catalog client.
#[derive(Clone)]
pub struct Catalog {
    /// Pooled, with the per-request timeout.
    http: reqwest::Client,
    /// Base URLs of the replicas.
    urls: Arc<Vec<String>>,
    /// Which replica the next call starts at.
    next: Arc<AtomicUsize>,
}

/// A replica's answer, or why there was none.
enum Attempt {
    Answer(StatusCode, String),
    NoAnswer(String),
}

impl Catalog {
    /// A client over `urls` with `timeout` per request.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .pool_idle_timeout(storefront_kit::http::CLIENT_IDLE_TIMEOUT)
                .build()
                .expect("static client configuration"),
            urls: Arc::new(urls),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends the request built by `make` to each replica in turn until one
    /// answers below 500.
    async fn call(
        &self,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), Unavailable> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = String::from("no catalog URL configured");
        for i in 0..self.urls.len() {
            let base = &self.urls[(start + i) % self.urls.len()];
            let request =
                make(&self.http, base).headers(storefront_kit::telemetry::trace_headers());
            let attempt = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    Attempt::Answer(status, response.text().await.unwrap_or_default())
                }
                Err(error) => Attempt::NoAnswer(error.to_string()),
            };
            match attempt {
                Attempt::Answer(status, body) if !status.is_server_error() => {
                    return Ok((status, body));
                }
                Attempt::Answer(status, _) => last = format!("{base} answered {status}"),
                Attempt::NoAnswer(error) => last = format!("{base}: {error}"),
            }
        }
        Err(Unavailable(last))
    }

    /// Prices the items, then reserves them under `reservation_id`.
    #[tracing::instrument(skip_all, fields(%reservation_id))]
    pub async fn reserve(
        &self,
        reservation_id: Uuid,
        items: &[Item],
    ) -> Result<Reservation, Unavailable> {
        // The prices are asked for at once, not one after the other (issue
        // 15: a saga waited for each in turn); they are judged in item order.
        let priced = futures::future::join_all(items.iter().map(|item| {
            self.call(|http, base| http.get(format!("{base}/products/{}", item.product_id)))
        }))
        .await;
        let mut amount_cents = 0i64;
        for (item, answer) in items.iter().zip(priced) {
            let (status, body) = answer?;
            if status == StatusCode::NOT_FOUND {
                return Ok(Reservation::Refused(format!(
                    "no product {}",
                    item.product_id
                )));
            }
            if !status.is_success() {
                return Err(Unavailable(format!(
                    "pricing product {} answered {status}",
                    item.product_id
                )));
            }
            let product: Product = serde_json::from_str(&body)
                .map_err(|e| Unavailable(format!("unreadable product {}: {e}", item.product_id)))?;
            let Some(sum) = add_line(amount_cents, product.price_cents, item.quantity) else {
                // Refused before anything is reserved: nothing to undo,
                // nothing charged.
                return Ok(Reservation::Refused(format!(
                    "the order total is out of range at product {} ({} × {} cents; at most {MAX_AMOUNT_CENTS})",
                    item.product_id, item.quantity, product.price_cents
                )));
            };
            amount_cents = sum;
        }
        let body = json!({"reservation_id": reservation_id, "items": items});
        let (status, text) = self
            .call(|http, base| http.post(format!("{base}/reservations")).json(&body))
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => Ok(Reservation::Reserved { amount_cents }),
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                Ok(Reservation::Refused(detail(&text)))
            }
            other => Err(Unavailable(format!("POST /reservations answered {other}"))),
        }
    }

    /// Releases the reservation; `Ok` also when catalog never had it (404).
    #[tracing::instrument(skip_all, fields(%reservation_id))]
    pub async fn release(&self, reservation_id: Uuid) -> Result<(), Unavailable> {
        let (status, _) = self
            .call(|http, base| http.delete(format!("{base}/reservations/{reservation_id}")))
            .await?;
        match status {
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            other => Err(Unavailable(format!(
                "DELETE /reservations answered {other}"
            ))),
        }
    }
}

/// The `detail` of a problem+json body, or the body itself.
fn detail(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_that_would_wrap_is_refused_instead_of_charged_small() {
        // The attack from issue 11: 4 × (2^62 + 1) wraps to 4 in i64.
        let price = (1i64 << 62) + 1;
        assert_eq!(price.wrapping_mul(4), 4);
        assert_eq!(add_line(0, price, 4), None);
        assert_eq!(add_line(i64::MAX - 1, 1, 2), None);
    }

    #[test]
    fn totals_up_to_the_cap_are_exact_and_beyond_it_refused() {
        assert_eq!(add_line(0, 1250, 2), Some(2500));
        assert_eq!(add_line(2500, 990, 3), Some(5470));
        assert_eq!(add_line(0, MAX_AMOUNT_CENTS, 1), Some(MAX_AMOUNT_CENTS));
        assert_eq!(add_line(1, MAX_AMOUNT_CENTS, 1), None);
        assert_eq!(add_line(0, -1, 1), None);
    }
}
