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

/// What `reserve` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken now.
    Created,
    /// This id already holds exactly these items: a retry; nothing changed.
    Existing,
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
}

/// What `release_reservation` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The stock went back now.
    Released(Vec<ReservationItem>),
    /// It had gone back before; nothing changed.
    AlreadyReleased(Vec<ReservationItem>),
    /// No reservation has this id.
    Missing,
}

/// Takes stock for every item or for none. `items` must be sorted by
/// product id with no product twice (the handler's validation ensures it).
///
/// One statement ([`TAKE_ALL`]) does it, with no transaction around it, so
/// the products' row locks are held only while Postgres runs it. Taking
/// each item in a statement of its own, in a transaction, held the first
/// lock across every later round trip and the COMMIT, and concurrent
/// checkouts of the same products queued behind it (issue 15: that UPDATE
/// was 5 s of Postgres time in a 3.8 s run of 512 sagas, nearly all of it
/// waiting).
///
/// The reservation row is inserted only once every item is known to have
/// enough stock, with `ON CONFLICT DO NOTHING`: a concurrent request with
/// the same id waits on that row's unique-index entry until the first
/// commits, then finds it, so a retried reservation never takes stock
/// twice. When nothing was created, the id's existing reservation (if any)
/// answers; otherwise the items say why.
#[tracing::instrument(skip_all, fields(reservation_id = %id, items = items.len()))]
pub async fn reserve(
    pool: &PgPool,
    id: Uuid,
    items: &[ReservationItem],
) -> Result<ReserveOutcome, sqlx::Error> {
    debug_assert!(items.windows(2).all(|w| w[0].product_id < w[1].product_id));
    let (product_ids, quantities): (Vec<i64>, Vec<i32>) =
        items.iter().map(|i| (i.product_id, i.quantity)).unzip();
    let on_hand: Vec<OnHand> = sqlx::query_as(TAKE_ALL)
        .bind(id)
        .bind(&product_ids)
        .bind(&quantities)
        .fetch_all(pool)
        .await?;
    if on_hand.first().is_some_and(|line| line.created) {
        return Ok(ReserveOutcome::Created);
    }
    let mut conn = pool.acquire().await?;
    if let Some(answer) = existing(&mut conn, id, items).await? {
        return Ok(answer);
    }
    let lines: Vec<_> = on_hand
        .iter()
        .map(|l| (l.product_id, l.quantity, l.stock))
        .collect();
    // Not created and no such reservation: an item is unknown or short (a
    // statement that created nothing with every item in stock would have
    // met this id's row, which is never deleted).
    refusal(&lines).ok_or(sqlx::Error::RowNotFound)
}

/// One item as [`TAKE_ALL`] found it.
#[derive(Debug, sqlx::FromRow)]
struct OnHand {
    product_id: i64,
    quantity: i32,
    /// `None`: no such product.
    stock: Option<i32>,
    /// Whether this statement created the reservation (same on every line).
    created: bool,
}

/// Takes stock for all of a reservation's items or for none ($1 the
/// reservation id, $2 product ids ascending, $3 quantities), in one
/// statement: locks the products in id order (`locked`, materialised
/// before anything is written); only if each item names a product with
/// enough stock, inserts the reservation row (`created`; nothing if the id
/// exists); only if it did, takes the stock and records the items. Under
/// READ COMMITTED a lock that waited returns the committed row, and the
/// `UPDATE` re-reads that same row, so nothing is oversold. Returns each
/// item with the stock found before (NULL: no such product), in id order.
const TAKE_ALL: &str = "WITH want AS ( \
         SELECT * FROM unnest($2::bigint[], $3::integer[]) AS w(product_id, quantity)), \
     locked AS ( \
         SELECT id, stock FROM products WHERE id = ANY($2) ORDER BY id FOR UPDATE), \
     enough AS ( \
         SELECT count(*) = cardinality($2::bigint[]) AS all_items FROM want \
         JOIN locked ON locked.id = want.product_id AND locked.stock >= want.quantity), \
     created AS ( \
         INSERT INTO reservations (reservation_id) SELECT $1 FROM enough WHERE enough.all_items \
         ON CONFLICT (reservation_id) DO NOTHING RETURNING reservation_id), \
     taken AS ( \
         UPDATE products p SET stock = p.stock - want.quantity, updated_at = now() \
         FROM want, created WHERE p.id = want.product_id \
         RETURNING p.id), \
     recorded AS ( \
         INSERT INTO reservation_items (reservation_id, product_id, quantity) \
         SELECT created.reservation_id, want.product_id, want.quantity FROM want, created \
         RETURNING product_id) \
     SELECT want.product_id, want.quantity, locked.stock, \
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
    Ok(Some(if stored == requested {
        ReserveOutcome::Existing
    } else {
        ReserveOutcome::Mismatch
    }))
}

/// Why a reservation was refused, from each item's `(product, quantity,
/// stock found)` in id order: the first item that names no product or is
/// short decides, as if the items were taken one by one.
fn refusal(on_hand: &[(i64, i32, Option<i32>)]) -> Option<ReserveOutcome> {
    on_hand
        .iter()
        .find_map(|&(product_id, requested, stock)| match stock {
            None => Some(ReserveOutcome::UnknownProduct(product_id)),
            Some(available) if available < requested => Some(ReserveOutcome::OutOfStock {
                product_id,
                requested,
                available,
            }),
            Some(_) => None,
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

/// A reservation's items in product-id order (the lock order).
async fn items_of(db: &mut PgConnection, id: Uuid) -> Result<Vec<ReservationItem>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, quantity FROM reservation_items \
         WHERE reservation_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_item_that_is_unknown_or_short_decides_the_refusal() {
        assert_eq!(refusal(&[(1, 2, Some(2)), (2, 5, Some(9))]), None);
        assert_eq!(
            refusal(&[(1, 2, Some(2)), (2, 5, Some(4)), (3, 1, None)]),
            Some(ReserveOutcome::OutOfStock {
                product_id: 2,
                requested: 5,
                available: 4
            })
        );
        assert_eq!(
            refusal(&[(1, 2, None), (2, 5, Some(0))]),
            Some(ReserveOutcome::UnknownProduct(1))
        );
    }
}
