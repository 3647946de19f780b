//! Checkout, as the CLI talks to it: `POST /checkout` under an
//! `Idempotency-Key`, on the body the service reads ([`CheckoutBody`]).
//!
//! The answer comes back as its status and, for a 2xx, the order id, not
//! as an error for anything else: the saga experiment counts every status,
//! retries a 5xx or a refused connection with the same key, and stops at a
//! 4xx.

use reqwest::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use super::call::url;
use super::contract::checkout::CheckoutBody;

/// One checkout instance.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27016`.
    pub base: String,
}

/// What `POST /checkout` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// 202 for a new order, 200 for the same key and body again.
    pub status: StatusCode,
    /// The order's id, when the answer is a 2xx whose body names it.
    pub order_id: Option<Uuid>,
}

/// The member of the order view the CLI reads.
#[derive(Deserialize)]
struct OrderId {
    order_id: Uuid,
}

impl Checkout {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into(),
        }
    }

    /// `POST /checkout` with `Idempotency-Key: key`.
    pub async fn place(&self, key: &str, body: &CheckoutBody) -> reqwest::Result<Placed> {
        let r = self
            .http
            .post(url(&self.base, "/checkout"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let order_id = if status.is_success() {
            r.json::<OrderId>().await.ok().map(|o| o.order_id)
        } else {
            None
        };
        Ok(Placed { status, order_id })
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract::checkout::{Item, eur};
    use super::super::contract::payments::Provider;
    use super::*;

    #[test]
    fn the_body_is_the_json_checkout_reads_with_payments_own_provider_names() {
        let body = CheckoutBody {
            items: vec![Item {
                product_id: 7,
                quantity: 2,
            }],
            card_number: "4242424242424242".into(),
            provider: Provider::Paypal,
            currency: eur(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "items": [{"product_id": 7, "quantity": 2}],
                "card_number": "4242424242424242",
                "provider": "paypal",
                "currency": "EUR",
            })
        );
        // Left out, the currency is EUR, as the handler takes it.
        let mut short = json.clone();
        short.as_object_mut().unwrap().remove("currency");
        assert_eq!(serde_json::from_value::<CheckoutBody>(short).unwrap(), body);
    }
}
