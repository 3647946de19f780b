//! `/ready`'s RabbitMQ check notices a paused broker (issue 12, defect g).
//!
//! A SIGSTOPped broker keeps every TCP connection open and says nothing, so
//! a consumer's "connected" flag stays true for a minute, until heartbeats
//! time out. The shared test broker can't be paused under other tests, so
//! this test puts a relay between the consumer and the real broker and
//! freezes the relay: from the client's side, exactly a paused broker
//! (bytes accepted, nothing answered). Needs TEST_AMQP_URL.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use storefront_kit::amqp::{self, Connected, ConsumerConfig, Handled};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A TCP relay to `upstream` that stops moving bytes while frozen.
struct Relay {
    port: u16,
    frozen: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, watching.clone()));
                tokio::spawn(pump(sr, cw, watching.clone()));
            }
        });
        Self { port, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

/// Copies `from` to `to`, holding each chunk while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `TEST_AMQP_URL` and its `host:port`.
fn amqp_url() -> Option<(String, String)> {
    let Ok(url) = std::env::var("TEST_AMQP_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_AMQP_URL is not set: run scripts/test.sh"
        );
        eprintln!("skipped: set TEST_AMQP_URL (scripts/test.sh does)");
        return None;
    };
    let after_scheme = url.split_once("://").unwrap().1;
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, h)| h);
    let host_port = after_user.split('/').next().unwrap().to_owned();
    Some((url, host_port))
}

/// Polls `connected.probe` until it gives `want`, within `within`.
async fn probe_becomes(connected: &Connected, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let ok = connected.probe(Duration::from_millis(500)).await.is_ok();
        if ok == want {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_rabbitmq_check_fails_within_its_timeout_while_the_broker_is_paused() {
    let Some((url, host_port)) = amqp_url() else {
        return;
    };
    let relay = Relay::start(host_port.clone()).await;
    let relayed = url.replacen(&host_port, &format!("127.0.0.1:{}", relay.port), 1);
    let connected = Connected::default();
    let stop = CancellationToken::new();
    let queue = format!("test.ready.{}", Uuid::new_v4().simple());
    let consumer = tokio::spawn(amqp::consume(
        SecretString::from(relayed),
        ConsumerConfig {
            queue: queue.clone(),
            name: "kit-ready-test".into(),
            prefetch: 1,
        },
        connected.clone(),
        stop.clone(),
        |_| async { Handled::Ack },
    ));
    assert!(
        probe_becomes(&connected, true, Duration::from_secs(10)).await,
        "the consumer never became ready"
    );
    let check = connected.check("rabbitmq");
    assert!(check.run().await.is_ok());

    relay.freeze(true);
    assert!(connected.get(), "the flag alone still says connected");
    let started = Instant::now();
    let outcome = check.run().await;
    assert!(!outcome.is_ok(), "ready while the broker is paused");
    assert!(started.elapsed() < Duration::from_millis(1900));
    assert!(outcome.error.unwrap().contains("did not answer"));

    relay.freeze(false);
    assert!(
        probe_becomes(&connected, true, Duration::from_secs(10)).await,
        "not ready again after the broker resumed"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer)
        .await
        .expect("the consumer did not stop")
        .unwrap();
}
