//! The outbox relay's bookkeeping on a real Postgres, with a fake sink that
//! refuses what it is told to: published rows are marked, refused rows back
//! off on the schedule computed in SQL and are dead-lettered after
//! `max_attempts`; the inbox records an id once. Needs TEST_DATABASE_URL
//! (in CI a missing URL fails).

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use storefront_kit::amqp::{Outgoing, Refused};
use storefront_kit::inbox::{self, InboxTable};
use storefront_kit::outbox::{self, Backoff, NewMessage, OutboxTable, RelayConfig, Sink};
use uuid::Uuid;

/// Refuses the ids it holds; records what it was asked to publish.
#[derive(Default)]
struct FakeSink {
    refuse: HashSet<Uuid>,
    seen: Vec<Uuid>,
}

impl Sink for FakeSink {
    async fn publish(
        &mut self,
        batch: &[Outgoing],
    ) -> Result<Vec<Result<(), Refused>>, lapin::Error> {
        self.seen.extend(batch.iter().map(|m| m.id));
        Ok(batch
            .iter()
            .map(|m| {
                if self.refuse.contains(&m.id) {
                    Err(Refused::Nacked)
                } else {
                    Ok(())
                }
            })
            .collect())
    }
}

async fn schema() -> Option<(PgPool, String)> {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_DATABASE_URL is not set: run scripts/test.sh"
        );
        eprintln!("skipped: set TEST_DATABASE_URL (scripts/test.sh does)");
        return None;
    };
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let schema = format!("test_{}", Uuid::new_v4().simple());
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.outbox (id uuid PRIMARY KEY, destination text NOT NULL, kind text NOT NULL, \
             payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
             attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
             last_error text, published_at timestamptz, dead_at timestamptz, traceparent text)"
        ),
        format!(
            "CREATE TABLE {schema}.inbox (message_id uuid PRIMARY KEY, kind text NOT NULL, \
             processed_at timestamptz NOT NULL DEFAULT now())"
        ),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    Some((pool, schema))
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
}

fn config(max_attempts: i32) -> RelayConfig {
    RelayConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(50),
        max_attempts,
        backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        retention: Duration::from_secs(3600),
        cleanup_interval: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn refused_rows_back_off_on_the_sql_schedule_and_are_dead_lettered_after_max_attempts() {
    let Some((pool, schema)) = schema().await else {
        return;
    };
    let table = OutboxTable::new(&format!("{schema}.outbox"), &format!("{schema}_outbox"));
    let config = config(4);
    let payload = serde_json::json!({"n": 1});
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        let message = NewMessage {
            id: *id,
            destination: "q",
            kind: "k",
            payload: &payload,
        };
        outbox::enqueue(&pool, &table, &message).await.unwrap();
    }
    let mut sink = FakeSink {
        refuse: HashSet::from([ids[1]]),
        ..FakeSink::default()
    };

    let pass = outbox::relay_once(&pool, &table, &mut sink, &config)
        .await
        .unwrap();
    assert_eq!(
        (
            pass.claimed,
            pass.published,
            pass.refused,
            pass.dead_lettered
        ),
        (3, 2, 1, 0)
    );
    let stats = outbox::stats(&pool, &table).await.unwrap();
    assert_eq!((stats.pending, stats.dead), (1, 0));

    // Each refusal schedules the next attempt base·2^attempts later, as
    // Backoff::delay says; the row is due again only then.
    for attempt in 1..=3u32 {
        let delay: f64 = sqlx::query_scalar(&format!(
            "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM {schema}.outbox WHERE id = $1"
        ))
        .bind(ids[1])
        .fetch_one(&pool)
        .await
        .unwrap();
        let expected = config.backoff.delay(attempt - 1).as_secs_f64();
        assert!(
            (delay - expected).abs() < 0.1,
            "attempt {attempt}: {delay} vs {expected}"
        );
        let early = outbox::relay_once(&pool, &table, &mut sink, &config)
            .await
            .unwrap();
        assert_eq!(early.claimed, 0, "claimed before its backoff elapsed");
        sqlx::query(&format!(
            "UPDATE {schema}.outbox SET next_attempt_at = now() WHERE id = $1"
        ))
        .bind(ids[1])
        .execute(&pool)
        .await
        .unwrap();
        let pass = outbox::relay_once(&pool, &table, &mut sink, &config)
            .await
            .unwrap();
        assert_eq!(pass.refused, 1);
        assert_eq!(
            pass.dead_lettered,
            usize::from(attempt == 3),
            "attempt {}",
            attempt + 1
        );
    }
    let stats = outbox::stats(&pool, &table).await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1));
    let pass = outbox::relay_once(&pool, &table, &mut sink, &config)
        .await
        .unwrap();
    assert_eq!(pass.claimed, 0, "a dead row is never claimed again");
    assert_eq!(
        sink.seen.iter().filter(|id| **id == ids[0]).count(),
        1,
        "published once"
    );

    // Retention removes published rows only.
    sqlx::query(&format!("UPDATE {schema}.outbox SET published_at = now() - interval '2 hours' WHERE published_at IS NOT NULL"))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        outbox::cleanup(&pool, &table, config.retention)
            .await
            .unwrap(),
        2
    );
    assert_eq!(outbox::stats(&pool, &table).await.unwrap().dead, 1);
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn a_rolled_back_business_transaction_leaves_no_message() {
    let Some((pool, schema)) = schema().await else {
        return;
    };
    let table = OutboxTable::new(&format!("{schema}.outbox"), &format!("{schema}_outbox"));
    let payload = serde_json::json!({});
    let mut tx = pool.begin().await.unwrap();
    let message = NewMessage {
        id: Uuid::new_v4(),
        destination: "q",
        kind: "k",
        payload: &payload,
    };
    outbox::enqueue(&mut *tx, &table, &message).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(outbox::stats(&pool, &table).await.unwrap().pending, 0);
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn the_inbox_says_first_once_per_message_id() {
    let Some((pool, schema)) = schema().await else {
        return;
    };
    let table = InboxTable::new(&format!("{schema}.inbox"));
    let id = Uuid::new_v4();
    assert!(inbox::record(&pool, &table, id, "k").await.unwrap());
    assert!(!inbox::record(&pool, &table, id, "k").await.unwrap());
    assert!(
        inbox::record(&pool, &table, Uuid::new_v4(), "k")
            .await
            .unwrap()
    );
    drop_schema(&pool, &schema).await;
}
