//! Small helpers the tests share: a /metrics counter, polling with a
//! deadline, and AMQP queue clean-up.

use std::future::Future;
use std::time::{Duration, Instant};

/// Counter `name` in a Prometheus text exposition, summed over the label
/// sets that contain `labels` ("" for all); 0 if absent.
#[must_use]
pub fn counter(exposition: &str, name: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter(|line| line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns `Some` or `within` passes; the deadline
/// is the assertion, so no test sleeps a fixed time and hopes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a condition: whether it held within `within`.
pub async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(within, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Deletes the queues `names` and their dead-letter queues on `amqp_url`,
/// as a test's clean-up does; a broker that is gone is no failure here.
#[cfg(feature = "amqp")]
pub async fn delete_queues(amqp_url: &str, names: &[String]) {
    use crate::amqp;
    let url = secrecy::SecretString::from(amqp_url.to_owned());
    if let Ok(connection) = amqp::connect(&url, "test-cleanup").await
        && let Ok(channel) = connection.create_channel().await
    {
        for queue in names {
            for name in [amqp::dead_letter_queue(queue), queue.clone()] {
                channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await
                    .ok();
            }
        }
        connection.close(200, "OK".into()).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_sums_its_label_sets_and_ignores_longer_names() {
        let text =
            "# TYPE hits counter\nhits{a=\"1\"} 2\nhits{a=\"2\"} 3\nhits_total 100\nhits 1\n";
        assert_eq!(counter(text, "hits", ""), 6.0);
        assert_eq!(counter(text, "hits", "a=\"2\""), 3.0);
        assert_eq!(counter(text, "misses", ""), 0.0);
    }

    #[tokio::test]
    async fn eventually_gives_up_at_the_deadline_and_until_reports_it() {
        let mut calls = 0;
        let found = eventually(Duration::from_millis(50), || {
            calls += 1;
            async { None::<()> }
        })
        .await;
        assert_eq!(found, None);
        assert!(calls >= 2, "{calls}");
        assert!(until(Duration::from_millis(50), || async { true }).await);
    }
}
