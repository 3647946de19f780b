//! Reserving and releasing stock, each in one transaction.
//!
//! Stock is taken with `UPDATE … SET stock = stock - q WHERE stock >= q`:
//! the check and the write are one statement, and under READ COMMITTED a
//! writer that waited for another's row lock re-checks the `WHERE` against
//! the committed row, so concurrent reservations can never oversell. Rows are
//! locked in product-id order in both directions, so two multi-item
//! reservations can't deadlock on each other.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One line of a reservation.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::FromRow,
    utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct ReservationItem {
    /// Field order matters: the derived `Ord` sorts by product id, the lock order.
    pub product_id: i64,
    /// Units held; positive.
    pub quantity: i32,
}

/// One line of a reservation with the price its units were taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PricedLine {
    /// The product.
    pub product_id: i64,
    /// Units held; positive.
    pub quantity: i32,
    /// The product's price per unit when its stock was taken, in minor
    /// units (for a reservation made before prices were recorded, the
    /// product's price now).
    pub price_cents: i64,
}

/// Σ price × quantity of `lines`, in minor units; `None` past `i64`
/// (impossible within [`crate::bounds`]: at most 10^18 for 100 lines).
pub fn total_cents(lines: &[PricedLine]) -> Option<i64> {
    lines.iter().try_fold(0i64, |sum, line| {
        line.price_cents
            .checked_mul(i64::from(line.quantity))
            .and_then(|amount| sum.checked_add(amount))
    })
}

/// What `reserve` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken now, at these prices.
    Created(Vec<PricedLine>),
    /// This id already holds exactly these items (at these prices): a
    /// retry; nothing changed.
    Existing(Vec<PricedLine>),
    /// This id already holds other items.
    Mismatch,
    /// This id was reserved and released; ids are not reused.
    Released,
    /// Not enough stock for one item; nothing was taken.
    OutOfStock {
        /// The first product (in id order) that is short.
        product_id: i64,
        /// What the reservation asked for.
        requested: i32,
        /// What was on hand when we looked.
        available: i32,
    },
    /// An item names no product; nothing was taken.
    UnknownProduct(i64),
    /// Every item is in stock, but the order's total is above the
    /// caller's `max_amount_cents`; nothing was taken.
    TotalAboveMax {
        /// Σ price × quantity, in minor units (wide: no overflow).
        total: i128,
        /// The caller's limit.
        max: i64,
    },
}

/// What `release_reservation` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The stock went back now.
    Released(Vec<PricedLine>),
    /// It had gone back before; nothing changed.
    AlreadyReleased(Vec<PricedLine>),
    /// No reservation has this id.
    Missing,
}

/// Takes stock for every item or for none, and prices it. `items` must
/// be sorted by product id with no product twice (the handler's validation
/// ensures it). With `max_amount_cents`, a reservation whose total (Σ
/// price × quantity at the prices its stock is taken at) would be above it
/// is refused before anything is taken, so a caller that charges the total
/// never holds stock it can't charge for.
///
/// One statement ([`TAKE_ALL`]) does it, with no transaction around it, so
/// the products' row locks are held only while Postgres runs it. Taking
/// each item in a statement of its own, in a transaction, held the first
/// lock across every later round trip and the COMMIT, and concurrent
/// checkouts of the same products queued behind it (issue 15: that UPDATE
/// was 5 s of Postgres time in a 3.8 s run of 512 sagas, nearly all of it
/// waiting). The prices are read from the rows it locks, and recorded with
/// the items, so a retry answers the same ones.
///
/// The reservation row is inserted only once every item is known to have
/// enough stock (and the total is within the limit), with `ON CONFLICT DO
/// NOTHING`: a concurrent request with the same id waits on that row's
/// unique-index entry until the first commits, then finds it, so a retried
/// reservation never takes stock twice. When nothing was created, the id's
/// existing reservation (if any) answers; otherwise the items say why.
#[tracing::instrument(skip_all, fields(reservation_id = %id, items = items.len()))]
pub async fn reserve(
    pool: &PgPool,
    id: Uuid,
    items: &[ReservationItem],
    max_amount_cents: Option<i64>,
) -> Result<ReserveOutcome, sqlx::Error> {
    debug_assert!(items.windows(2).all(|w| w[0].product_id < w[1].product_id));
    let (product_ids, quantities): (Vec<i64>, Vec<i32>) =
        items.iter().map(|i| (i.product_id, i.quantity)).unzip();
    let on_hand: Vec<OnHand> = sqlx::query_as(TAKE_ALL)
        .bind(id)
        .bind(&product_ids)
        .bind(&quantities)
        .bind(max_amount_cents)
        .fetch_all(pool)
        .await?;
    if on_hand.first().is_some_and(|line| line.created) {
        let lines = on_hand
            .iter()
            .map(|l| PricedLine {
                product_id: l.product_id,
                quantity: l.quantity,
                price_cents: l.price_cents.unwrap_or_default(),
            })
            .collect();
        return Ok(ReserveOutcome::Created(lines));
    }
    let mut conn = pool.acquire().await?;
    if let Some(answer) = existing(&mut conn, id, items).await? {
        return Ok(answer);
    }
    let lines: Vec<_> = on_hand
        .iter()
        .map(|l| Found {
            product_id: l.product_id,
            quantity: l.quantity,
            stock: l.stock,
            price_cents: l.price_cents,
        })
        .collect();
    // Not created and no such reservation: an item is unknown or short, or
    // the total is above the limit (a statement that created nothing with
    // every item in stock and within the limit would have met this id's
    // row, which is never deleted).
    refusal(&lines, max_amount_cents).ok_or(sqlx::Error::RowNotFound)
}

/// One item as [`TAKE_ALL`] found it.
#[derive(Debug, sqlx::FromRow)]
struct OnHand {
    product_id: i64,
    quantity: i32,
    /// `None`: no such product.
    stock: Option<i32>,
    /// The product's price (`None`: no such product).
    price_cents: Option<i64>,
    /// Whether this statement created the reservation (same on every line).
    created: bool,
}

/// Takes stock for all of a reservation's items or for none ($1 the
/// reservation id, $2 product ids ascending, $3 quantities, $4 the largest
/// total allowed or NULL), in one statement: locks the products in id
/// order (`locked`, materialised before anything is written); only if each
/// item names a product with enough stock and the total at the locked
/// prices is within $4, inserts the reservation row (`created`; nothing if
/// the id exists); only if it did, takes the stock and records the items
/// with their prices. Under READ COMMITTED a lock that waited returns the
/// committed row, and the `UPDATE` re-reads that same row, so nothing is
/// oversold. Returns each item with the stock and price found (NULL: no
/// such product), in id order. The total is summed in `numeric`, which
/// cannot overflow.
const TAKE_ALL: &str = "WITH want AS ( \
         SELECT * FROM unnest($2::bigint[], $3::integer[]) AS w(product_id, quantity)), \
     locked AS ( \
         SELECT id, stock, price_cents FROM products WHERE id = ANY($2) ORDER BY id FOR UPDATE), \
     enough AS ( \
         SELECT count(*) = cardinality($2::bigint[]) AS all_items, \
             coalesce(sum(locked.price_cents::numeric * want.quantity), 0) AS total \
         FROM want \
         JOIN locked ON locked.id = want.product_id AND locked.stock >= want.quantity), \
     created AS ( \
         INSERT INTO reservations (reservation_id) SELECT $1 FROM enough \
         WHERE enough.all_items AND ($4::bigint IS NULL OR enough.total <= $4::bigint) \
         ON CONFLICT (reservation_id) DO NOTHING RETURNING reservation_id), \
     taken AS ( \
         UPDATE products p SET stock = p.stock - want.quantity, updated_at = now() \
         FROM want, created WHERE p.id = want.product_id \
         RETURNING p.id), \
     recorded AS ( \
         INSERT INTO reservation_items (reservation_id, product_id, quantity, price_cents) \
         SELECT created.reservation_id, want.product_id, want.quantity, locked.price_cents \
         FROM want JOIN locked ON locked.id = want.product_id, created \
         RETURNING product_id) \
     SELECT want.product_id, want.quantity, locked.stock, locked.price_cents, \
         EXISTS (SELECT 1 FROM created) AS created \
     FROM want LEFT JOIN locked ON locked.id = want.product_id ORDER BY want.product_id";

/// Compares a reservation that already exists with the one requested;
/// `None` when the id has none.
async fn existing(
    db: &mut PgConnection,
    id: Uuid,
    requested: &[ReservationItem],
) -> Result<Option<ReserveOutcome>, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM reservations WHERE reservation_id = $1")
            .bind(id)
            .fetch_optional(&mut *db)
            .await?;
    let Some(status) = status else {
        return Ok(None);
    };
    if status == "released" {
        return Ok(Some(ReserveOutcome::Released));
    }
    let stored = items_of(db, id).await?;
    let same = stored.len() == requested.len()
        && stored
            .iter()
            .zip(requested)
            .all(|(s, r)| (s.product_id, s.quantity) == (r.product_id, r.quantity));
    Ok(Some(if same {
        ReserveOutcome::Existing(stored)
    } else {
        ReserveOutcome::Mismatch
    }))
}

/// An item as the reservation statement found it.
#[derive(Debug, Clone, Copy)]
struct Found {
    product_id: i64,
    quantity: i32,
    /// `None`: no such product.
    stock: Option<i32>,
    /// `None`: no such product.
    price_cents: Option<i64>,
}

/// Why a reservation was refused, from each item as found, in id order:
/// the first item that names no product or is short decides, as if the
/// items were taken one by one; with every item in stock, a total above
/// `max_amount_cents` does.
fn refusal(found: &[Found], max_amount_cents: Option<i64>) -> Option<ReserveOutcome> {
    let short = found.iter().find_map(|f| match f.stock {
        None => Some(ReserveOutcome::UnknownProduct(f.product_id)),
        Some(available) if available < f.quantity => Some(ReserveOutcome::OutOfStock {
            product_id: f.product_id,
            requested: f.quantity,
            available,
        }),
        Some(_) => None,
    });
    short.or_else(|| {
        let max = max_amount_cents?;
        let total: i128 = found
            .iter()
            .map(|f| i128::from(f.price_cents.unwrap_or_default()) * i128::from(f.quantity))
            .sum();
        (total > i128::from(max)).then_some(ReserveOutcome::TotalAboveMax { total, max })
    })
}

/// Gives a reservation's stock back, exactly once: the status flips from
/// `reserved` to `released` in the same transaction that returns the stock,
/// and a concurrent second release waits for that row and then finds
/// nothing left to flip.
#[tracing::instrument(skip_all, fields(reservation_id = %id))]
pub async fn release_reservation(pool: &PgPool, id: Uuid) -> Result<ReleaseOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let flipped = sqlx::query(
        "UPDATE reservations SET status = 'released', released_at = now() \
         WHERE reservation_id = $1 AND status = 'reserved'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if flipped.rows_affected() == 0 {
        let found: Option<String> =
            sqlx::query_scalar("SELECT status FROM reservations WHERE reservation_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        return Ok(match found {
            None => ReleaseOutcome::Missing,
            Some(_) => ReleaseOutcome::AlreadyReleased(items_of(&mut tx, id).await?),
        });
    }
    let items = items_of(&mut tx, id).await?;
    for item in &items {
        // Saturating at i32::MAX rather than failing: a release must
        // complete (see `crate::bounds`); the sum is taken in bigint.
        let at_max: Option<bool> = sqlx::query_scalar(
            "UPDATE products SET stock = LEAST(stock::bigint + $2, 2147483647)::integer, \
             updated_at = now() WHERE id = $1 \
             RETURNING stock = 2147483647",
        )
        .bind(item.product_id)
        .bind(i64::from(item.quantity))
        .fetch_optional(&mut *tx)
        .await?;
        if at_max == Some(true) {
            tracing::warn!(
                product_id = item.product_id,
                quantity = item.quantity,
                "release brought stock to i32::MAX (saturating); units beyond it are lost"
            );
        }
    }
    tx.commit().await?;
    Ok(ReleaseOutcome::Released(items))
}

/// A reservation's items in product-id order (the lock order), with the
/// prices they were taken at (the product's price now for a reservation
/// made before prices were recorded).
async fn items_of(db: &mut PgConnection, id: Uuid) -> Result<Vec<PricedLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.product_id, i.quantity, coalesce(i.price_cents, p.price_cents) AS price_cents \
         FROM reservation_items i JOIN products p ON p.id = i.product_id \
         WHERE i.reservation_id = $1 ORDER BY i.product_id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(product_id: i64, quantity: i32, stock: Option<i32>, price: i64) -> Found {
        Found {
            product_id,
            quantity,
            stock,
            price_cents: stock.map(|_| price),
        }
    }

    #[test]
    fn the_first_item_that_is_unknown_or_short_decides_the_refusal() {
        let ok = [found(1, 2, Some(2), 10), found(2, 5, Some(9), 10)];
        assert_eq!(refusal(&ok, None), None);
        assert_eq!(
            refusal(
                &[
                    found(1, 2, Some(2), 10),
                    found(2, 5, Some(4), 10),
                    found(3, 1, None, 0)
                ],
                Some(0)
            ),
            Some(ReserveOutcome::OutOfStock {
                product_id: 2,
                requested: 5,
                available: 4
            })
        );
        assert_eq!(
            refusal(&[found(1, 2, None, 0), found(2, 5, Some(0), 10)], None),
            Some(ReserveOutcome::UnknownProduct(1))
        );
    }

    #[test]
    fn with_every_item_in_stock_a_total_above_the_limit_is_the_refusal() {
        let lines = [found(1, 2, Some(9), 1_000), found(2, 3, Some(9), 500)];
        // 2 × 1000 + 3 × 500 = 3500.
        assert_eq!(refusal(&lines, Some(3_500)), None);
        assert_eq!(
            refusal(&lines, Some(3_499)),
            Some(ReserveOutcome::TotalAboveMax {
                total: 3_500,
                max: 3_499
            })
        );
        // A total no i64 can hold is still compared exactly.
        let huge = [found(1, 1_000_000, Some(i32::MAX), i64::MAX)];
        assert!(matches!(
            refusal(&huge, Some(i64::MAX)),
            Some(ReserveOutcome::TotalAboveMax { .. })
        ));
    }

    #[test]
    fn a_total_is_the_sum_of_price_times_quantity_or_none_past_i64() {
        let line = |quantity, price_cents| PricedLine {
            product_id: 1,
            quantity,
            price_cents,
        };
        assert_eq!(total_cents(&[line(2, 1_250), line(3, 990)]), Some(5_470));
        assert_eq!(total_cents(&[]), Some(0));
        assert_eq!(total_cents(&[line(4, (1 << 62) + 1)]), None);
    }
}
