//! A claim: what a client sends ([`NewClaim`], validated field by field)
//! and what the API returns ([`Claim`]: the 201 body and `GET /claims/{id}`).

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

pub use crate::contract::{Claim, Reason};

/// Longest `order_id` / `customer_id` accepted.
pub const MAX_ID_LEN: usize = 64;
/// Longest `note` accepted, in characters.
pub const MAX_NOTE_LEN: usize = 2000;
/// The members a claim body may have; anything else is refused, so a typo
/// (`"amount"`) is a 422 instead of a silently different fingerprint.
const FIELDS: [&str; 5] = ["order_id", "customer_id", "reason", "amount_cents", "note"];

/// One rule a body broke, for the 422's `errors` list.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The member's name (`""` for the body as a whole).
    pub field: String,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A valid claim request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    /// The order the claim is about.
    pub order_id: String,
    /// Who is claiming.
    pub customer_id: String,
    /// Why.
    pub reason: Reason,
    /// How much the customer asks back, in minor units.
    pub amount_cents: i64,
    /// Free text, optional.
    pub note: Option<String>,
}

impl NewClaim {
    /// Validates a JSON body, reporting every broken rule at once so a
    /// client fixes its request in one round trip. With a verified
    /// `customer` (`X-User-Id`) the body's `customer_id` may be left out and
    /// is then the customer; whether a given one matches is the caller's
    /// check (a 403, not a field error).
    pub fn from_json(body: &Value, customer: Option<Uuid>) -> Result<Self, Vec<FieldError>> {
        let Some(object) = body.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(k, "unknown field"))
            .collect();
        let order_id = id_field(object, "order_id", &mut errors);
        let customer_id = match (customer, object.get("customer_id")) {
            (Some(user), None | Some(Value::Null)) => Some(user.to_string()),
            _ => id_field(object, "customer_id", &mut errors),
        };
        let reason = reason_field(object, &mut errors);
        let amount_cents = amount_field(object, &mut errors);
        let note = note_field(object, &mut errors);
        match (order_id, customer_id, reason, amount_cents, note) {
            (Some(order_id), Some(customer_id), Some(reason), Some(amount_cents), Some(note))
                if errors.is_empty() =>
            {
                Ok(Self {
                    order_id,
                    customer_id,
                    reason,
                    amount_cents,
                    note,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A required, non-blank string of at most [`MAX_ID_LEN`] characters.
fn id_field(
    object: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match object.get(name) {
        None | Some(Value::Null) => errors.push(FieldError::new(name, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(FieldError::new(name, "must not be blank"));
        }
        Some(Value::String(s)) if s.chars().count() > MAX_ID_LEN => {
            errors.push(FieldError::new(
                name,
                format!("must be at most {MAX_ID_LEN} characters"),
            ));
        }
        Some(Value::String(s)) => return Some(s.clone()),
        Some(_) => errors.push(FieldError::new(name, "must be a string")),
    }
    None
}

fn reason_field(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Reason> {
    let expected = "must be one of damaged, missing, wrong_item, other";
    match object.get("reason") {
        None | Some(Value::Null) => errors.push(FieldError::new("reason", "is required")),
        Some(Value::String(s)) => match Reason::parse(s) {
            Some(reason) => return Some(reason),
            None => errors.push(FieldError::new("reason", expected)),
        },
        Some(_) => errors.push(FieldError::new("reason", expected)),
    }
    None
}

fn amount_field(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<i64> {
    match object.get("amount_cents") {
        None | Some(Value::Null) => errors.push(FieldError::new("amount_cents", "is required")),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(cents) if cents >= 0 => return Some(cents),
            Some(_) => errors.push(FieldError::new("amount_cents", "must not be negative")),
            None => errors.push(FieldError::new(
                "amount_cents",
                "must be a whole number of cents that fits in 64 bits",
            )),
        },
        Some(_) => errors.push(FieldError::new("amount_cents", "must be an integer")),
    }
    None
}

/// `Some(None)` when absent or null, `Some(Some(_))` when a valid string.
fn note_field(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match object.get("note") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.chars().count() > MAX_NOTE_LEN => {
            errors.push(FieldError::new(
                "note",
                format!("must be at most {MAX_NOTE_LEN} characters"),
            ));
            None
        }
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            errors.push(FieldError::new("note", "must be a string or null"));
            None
        }
    }
}

impl Claim {
    /// A new claim with a fresh id. `now` is cut to microseconds, what a
    /// `timestamptz` keeps, so the rendered body and the stored row agree.
    pub fn new(request: NewClaim, now: DateTime<Utc>) -> Self {
        Self {
            claim_id: Uuid::new_v4(),
            order_id: request.order_id,
            customer_id: request.customer_id,
            reason: request.reason,
            amount_cents: request.amount_cents,
            note: request.note,
            created_at: now.trunc_subsecs(6),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid() -> Value {
        json!({
            "order_id": "ord-1",
            "customer_id": "cus-1",
            "reason": "wrong_item",
            "amount_cents": 1290,
            "note": "sent tea instead of coffee"
        })
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_verified_customer_may_leave_customer_id_out_and_the_lab_may_not() {
        let user = Uuid::new_v4();
        let mut body = valid();
        body.as_object_mut().unwrap().remove("customer_id");
        assert_eq!(
            NewClaim::from_json(&body, Some(user)).unwrap().customer_id,
            user.to_string()
        );
        assert_eq!(
            fields(&NewClaim::from_json(&body, None).unwrap_err()),
            ["customer_id"]
        );
        body["customer_id"] = Value::Null;
        assert!(NewClaim::from_json(&body, Some(user)).is_ok());
        // One that is given is validated like any field (the route checks it
        // names the customer).
        body["customer_id"] = json!(7);
        assert_eq!(
            fields(&NewClaim::from_json(&body, Some(user)).unwrap_err()),
            ["customer_id"]
        );
    }

    #[test]
    fn a_complete_body_is_valid() {
        let claim = NewClaim::from_json(&valid(), None).unwrap();
        assert_eq!(claim.reason, Reason::WrongItem);
        assert_eq!(claim.amount_cents, 1290);
        assert_eq!(claim.note.as_deref(), Some("sent tea instead of coffee"));
    }

    #[test]
    fn note_may_be_absent_or_null_and_amount_zero() {
        let mut body = valid();
        body["note"] = Value::Null;
        body["amount_cents"] = json!(0);
        assert_eq!(NewClaim::from_json(&body, None).unwrap().note, None);
        body.as_object_mut().unwrap().remove("note");
        assert!(NewClaim::from_json(&body, None).is_ok());
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let body = json!({
            "order_id": " ",
            "reason": "lost",
            "amount_cents": -1,
            "note": 5,
            "amount": 3
        });
        let errors = NewClaim::from_json(&body, None).unwrap_err();
        let mut names = fields(&errors);
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "amount",
                "amount_cents",
                "customer_id",
                "note",
                "order_id",
                "reason"
            ]
        );
    }

    #[test]
    fn amounts_must_be_non_negative_integers() {
        for bad in [
            json!(-5),
            json!(12.5),
            json!("100"),
            json!(u64::MAX),
            json!(true),
        ] {
            let mut body = valid();
            body["amount_cents"] = bad.clone();
            let errors = NewClaim::from_json(&body, None).unwrap_err();
            assert_eq!(fields(&errors), ["amount_cents"], "{bad}");
        }
    }

    #[test]
    fn each_documented_reason_parses_and_others_do_not() {
        for reason in Reason::ALL {
            let mut body = valid();
            body["reason"] = json!(reason.as_str());
            assert_eq!(NewClaim::from_json(&body, None).unwrap().reason, reason);
        }
        for bad in [json!("Damaged"), json!(""), json!(1)] {
            let mut body = valid();
            body["reason"] = bad;
            assert_eq!(
                fields(&NewClaim::from_json(&body, None).unwrap_err()),
                ["reason"]
            );
        }
    }

    #[test]
    fn overlong_ids_and_notes_are_refused() {
        let mut body = valid();
        body["order_id"] = json!("o".repeat(MAX_ID_LEN + 1));
        body["note"] = json!("n".repeat(MAX_NOTE_LEN + 1));
        let errors = NewClaim::from_json(&body, None).unwrap_err();
        let mut names = fields(&errors);
        names.sort_unstable();
        assert_eq!(names, ["note", "order_id"]);
    }

    #[test]
    fn non_objects_are_refused() {
        for bad in [json!([]), json!("claim"), json!(null)] {
            assert_eq!(fields(&NewClaim::from_json(&bad, None).unwrap_err()), [""]);
        }
    }

    #[test]
    fn rendered_claim_has_the_documented_shape() {
        let now = DateTime::parse_from_rfc3339("2025-03-01T12:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let claim = Claim::new(NewClaim::from_json(&valid(), None).unwrap(), now);
        let json = serde_json::to_value(&claim).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "amount_cents",
                "claim_id",
                "created_at",
                "customer_id",
                "note",
                "order_id",
                "reason"
            ]
        );
        assert_eq!(json["reason"], "wrong_item");
        assert_eq!(json["created_at"], "2025-03-01T12:00:00.123456Z");
        assert_eq!(claim.claim_id.get_version_num(), 4);
    }

    #[test]
    fn a_contract_request_is_a_body_the_validator_accepts_and_a_claim_reads_back() {
        let request = crate::contract::ClaimRequest {
            order_id: "ord-1".into(),
            customer_id: Some("cus-1".into()),
            reason: Reason::WrongItem,
            amount_cents: 250,
            note: None,
        };
        let body = serde_json::to_value(&request).unwrap();
        let new = NewClaim::from_json(&body, None).unwrap();
        assert_eq!(new.reason, Reason::WrongItem);
        assert_eq!(new.amount_cents, 250);
        // What the 201 renders, a client reads as the same claim.
        let claim = Claim::new(new, Utc::now());
        let read: Claim = serde_json::from_slice(&serde_json::to_vec(&claim).unwrap()).unwrap();
        assert_eq!(read, claim);
        // Unknown members are refused on both sides.
        let typo = json!({"order_id": "o", "reason": "other", "amount_cents": 1, "amount": 2});
        assert!(serde_json::from_value::<crate::contract::ClaimRequest>(typo.clone()).is_err());
        assert!(NewClaim::from_json(&typo, None).is_err());
    }
}
