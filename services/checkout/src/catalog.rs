//! The catalog as the saga calls it, over HTTP: reserve the items under a
//! reservation id derived from the order (so a retry is the same
//! reservation) — catalog answers with the price each line was taken at,
//! and refuses, taking nothing, a total above [`MAX_AMOUNT_CENTS`] — and
//! release them as the compensation. Replicas are tried in turn, starting
//! from a rotating one; a replica that doesn't answer or answers 5xx is a
//! reason to try the next, an answer is final.
//!
//! Pricing comes with the reservation (one request, one catalog
//! statement) rather than from a `GET /products/{id}` per line beforehand:
//! those were one request and one database read each per saga, and the
//! reservation's own invalidation made every one a cache miss (issue 15).
//! The prices are those of the rows whose stock was taken, under the same
//! lock.

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

/// One line of catalog's answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PricedLine {
    /// The product.
    pub product_id: i64,
    /// Units held.
    pub quantity: i32,
    /// The price per unit the stock was taken at, in minor units.
    pub price_cents: i64,
}

/// Catalog's answer to a reservation (201, or 200 for a retry).
#[derive(Deserialize)]
struct Reserved {
    items: Vec<PricedLine>,
}

/// The order's total from catalog's priced `lines`, which must be exactly
/// the ordered `items` (both in product-id order), summed with
/// [`add_line`]; why not, otherwise. Catalog refuses a total above
/// [`MAX_AMOUNT_CENTS`] before taking anything, so an error here means an
/// answer catalog should never give: the stock is held, and the step is
/// retried until its deadline, whose compensation releases it. Nothing is
/// charged either way.
pub fn priced_total(items: &[Item], lines: &[PricedLine]) -> Result<i64, String> {
    if lines.len() != items.len()
        || lines
            .iter()
            .zip(items)
            .any(|(l, i)| (l.product_id, l.quantity) != (i.product_id, i.quantity))
    {
        return Err("catalog's reservation holds other items than the order's".into());
    }
    lines.iter().try_fold(0i64, |total, line| {
        add_line(total, line.price_cents, line.quantity).ok_or_else(|| {
            format!(
                "the order total is out of range at product {} ({} × {} cents; at most {MAX_AMOUNT_CENTS})",
                line.product_id, line.quantity, line.price_cents
            )
        })
    })
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

    /// Reserves the items under `reservation_id`, priced by catalog: the
    /// total is Σ price × quantity of its answer.
    #[tracing::instrument(skip_all, fields(%reservation_id))]
    pub async fn reserve(
        &self,
        reservation_id: Uuid,
        items: &[Item],
    ) -> Result<Reservation, Unavailable> {
        let body = json!({
            "reservation_id": reservation_id,
            "items": items,
            "max_amount_cents": MAX_AMOUNT_CENTS,
        });
        let (status, text) = self
            .call(|http, base| http.post(format!("{base}/reservations")).json(&body))
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let reserved: Reserved = serde_json::from_str(&text)
                    .map_err(|e| Unavailable(format!("unreadable reservation: {e}")))?;
                let amount_cents = priced_total(items, &reserved.items).map_err(Unavailable)?;
                Ok(Reservation::Reserved { amount_cents })
            }
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

    fn line(product_id: i64, quantity: i32, price_cents: i64) -> PricedLine {
        PricedLine {
            product_id,
            quantity,
            price_cents,
        }
    }

    fn item(product_id: i64, quantity: i32) -> Item {
        Item {
            product_id,
            quantity,
        }
    }

    #[test]
    fn an_order_is_priced_from_the_lines_catalog_reserved() {
        let items = [item(2, 2), item(9, 3)];
        let lines = [line(2, 2, 1250), line(9, 3, 990)];
        assert_eq!(priced_total(&items, &lines), Ok(5470));
    }

    #[test]
    fn a_reservation_answer_for_other_items_or_a_wrapping_total_prices_nothing() {
        let items = [item(2, 2), item(9, 3)];
        for lines in [
            vec![line(2, 2, 1250)],
            vec![line(2, 2, 1250), line(9, 4, 990)],
            vec![line(2, 2, 1250), line(8, 3, 990)],
            vec![line(2, 2, 1250), line(9, 3, 990), line(10, 1, 1)],
        ] {
            assert!(priced_total(&items, &lines).is_err(), "{lines:?}");
        }
        // The attack from issue 11, had catalog let the price through.
        let wrapping = [line(778, 4, (1 << 62) + 1)];
        let err = priced_total(&[item(778, 4)], &wrapping).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        assert!(priced_total(&[item(1, 1)], &[line(1, 1, -5)]).is_err());
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
