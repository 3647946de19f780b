//! Authorization at the edge: who may send what where. A pure function of
//! the routed service, the method, the first path segment and the verified
//! caller, so it is tested without I/O; [`crate::routes`] applies it after
//! authentication and after the path is parsed (it decides on exactly what
//! will be forwarded).
//!
//! | service | request | needs |
//! | --- | --- | --- |
//! | `catalog` | `GET`, `HEAD` | nobody: reads are public |
//! | `catalog` | any other method on `/reservations…` | a `customer` (holding stock for a cart) |
//! | `catalog` | any other method | `staff` (prices, stock, products) |
//! | `checkout`, `claims` | anything | a `customer` |
//! | `identity` | anything | nobody: it is where one signs in |
//! | anything else | anything | refused: a service joins with a line here |
//!
//! Anonymous where someone is needed: 401 (sign in); signed in without the
//! role: 403. Services still check ownership themselves (a customer reads
//! only their own orders and claims).

use axum::http::Method;

use crate::auth::Identity;

/// The role of shoppers.
pub const CUSTOMER: &str = "customer";
/// The role of the shop's staff.
pub const STAFF: &str = "staff";

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Nobody signed in, and someone must be: 401.
    Unauthenticated {
        /// The role (or sign-in) the route needs.
        needs: &'static str,
    },
    /// Signed in without the role: 403.
    Forbidden {
        /// The role the route needs.
        needs: &'static str,
    },
    /// No rule for this service: 403 for everyone.
    NoRule,
}

/// Whether `method` only reads.
fn read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// The decision for `method` on `service`, first path segment `first`
/// (`products`, `reservations`, …), by `caller`.
pub fn decide(
    service: &str,
    method: &Method,
    first: Option<&str>,
    caller: Option<&Identity>,
) -> Decision {
    let needs = match service {
        "identity" => return Decision::Allow,
        "catalog" if read(method) => return Decision::Allow,
        "catalog" if first == Some("reservations") => CUSTOMER,
        "catalog" => STAFF,
        "checkout" | "claims" => CUSTOMER,
        _ => return Decision::NoRule,
    };
    match caller {
        None => Decision::Unauthenticated { needs },
        Some(c) if c.has_role(needs) => Decision::Allow,
        Some(_) => Decision::Forbidden { needs },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn user(roles: &[&str]) -> Identity {
        Identity {
            user: Uuid::nil(),
            name: "u".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            jti: Uuid::nil(),
            exp: 0,
        }
    }

    #[test]
    fn catalog_reads_and_identity_are_public() {
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(
                decide("catalog", &m, Some("products"), None),
                Decision::Allow
            );
        }
        for m in [Method::GET, Method::POST] {
            assert_eq!(decide("identity", &m, Some("token"), None), Decision::Allow);
        }
    }

    #[test]
    fn catalog_writes_need_staff() {
        let customer = user(&[CUSTOMER]);
        let staff = user(&[STAFF]);
        for m in [
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert_eq!(
                decide("catalog", &m, Some("products"), None),
                Decision::Unauthenticated { needs: STAFF },
                "{m}"
            );
            assert_eq!(
                decide("catalog", &m, Some("products"), Some(&customer)),
                Decision::Forbidden { needs: STAFF },
                "{m}"
            );
            assert_eq!(
                decide("catalog", &m, Some("products"), Some(&staff)),
                Decision::Allow
            );
        }
    }

    #[test]
    fn reserving_stock_needs_a_customer() {
        let p = Method::POST;
        assert_eq!(
            decide("catalog", &p, Some("reservations"), None),
            Decision::Unauthenticated { needs: CUSTOMER }
        );
        assert_eq!(
            decide(
                "catalog",
                &p,
                Some("reservations"),
                Some(&user(&[CUSTOMER]))
            ),
            Decision::Allow
        );
    }

    #[test]
    fn checkout_and_claims_need_a_customer_for_every_method() {
        let customer = user(&[CUSTOMER]);
        let staff = user(&[STAFF]);
        for service in ["checkout", "claims"] {
            for m in [Method::GET, Method::POST] {
                assert_eq!(
                    decide(service, &m, None, None),
                    Decision::Unauthenticated { needs: CUSTOMER }
                );
                assert_eq!(
                    decide(service, &m, None, Some(&staff)),
                    Decision::Forbidden { needs: CUSTOMER }
                );
                assert_eq!(decide(service, &m, None, Some(&customer)), Decision::Allow);
                assert_eq!(
                    decide(service, &m, None, Some(&user(&[]))),
                    Decision::Forbidden { needs: CUSTOMER }
                );
            }
        }
    }

    #[test]
    fn a_service_without_a_rule_is_refused_to_everyone() {
        assert_eq!(
            decide(
                "payments",
                &Method::GET,
                None,
                Some(&user(&[STAFF, CUSTOMER]))
            ),
            Decision::NoRule
        );
    }
}
