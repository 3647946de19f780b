//! What bearer-token verification adds to a request through the BFF:
//! sequential GETs of one product through a real BFF (the library, built as
//! this example is: run it with `--release`), its buckets and the denylist
//! in real Redis, in front of an upstream that answers from memory (a
//! cached product), alternating anonymous and `Authorization: Bearer`
//! requests so both arms see the same machine. Loopback only; bounded.
//!
//! ```sh
//! TEST_REDIS_URL=redis://… cargo run --release -p storefront-bff --example edge_latency -- 5000
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use storefront_bff::config::Config;
use storefront_bff::startup::Application;
use storefront_kit::Vars;

const KID: &str = "bench";

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(5000, |a| a.parse().expect("a request count"));
    assert!((1..=100_000).contains(&n), "1..=100000 requests per arm");
    let redis = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL");

    let product = json!({"id": 1, "name": "Kettle", "price_cents": 4500, "stock": 12});
    let catalog = serve(Router::new().route(
        "/products/{id}",
        get(move || {
            let p = product.clone();
            async move { ([("x-cache", "l1")], axum::Json(p)) }
        }),
    ))
    .await;
    let sk = SigningKey::from_bytes(&[5; 32]);
    let x = B64.encode(sk.verifying_key().to_bytes());
    let jwks =
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": KID, "x": x}]});
    let identity = serve(Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    ))
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "storefront-identity", "aud": "storefront",
        "sub": "00000000-0000-4000-8000-00000000a11c", "name": "alice", "roles": ["customer"],
        "jti": uuid::Uuid::new_v4(), "iat": now, "exp": now + 3600});
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KID.into());
    let der = sk.to_pkcs8_der().unwrap();
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();

    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let vars = Vars::from_pairs([
        ("SERVICE_NAME", "bff-bench"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("REDIS_URL", redis.as_str()),
        ("CATALOG_URLS", catalog.as_str()),
        ("IDENTITY_URLS", identity.as_str()),
        ("RATE_LIMIT_KEY_PREFIX", prefix.as_str()),
        // The limit is not what is measured: never refuse.
        ("RATE_LIMIT_CAPACITY", "1000000"),
        ("RATE_LIMIT_REFILL_PER_SEC", "1000000"),
    ]);
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let bff = format!("http://127.0.0.1:{}/api/catalog/products/1", app.port());
    tokio::spawn(
        app.run_until(storefront_kit::shutdown::CancellationToken::new().cancelled_owned()),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let send = |bearer: bool| {
        let mut r = http.get(&bff);
        if bearer {
            r = r.bearer_auth(&token);
        }
        async move {
            let t = Instant::now();
            let response = r.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
            t.elapsed()
        }
    };
    // Warm up both paths (connections, the JWKS, the Lua script).
    for i in 0..200 {
        send(i % 2 == 0).await;
    }
    let (mut anonymous, mut bearer) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let started = Instant::now();
    for _ in 0..n {
        anonymous.push(send(false).await);
        bearer.push(send(true).await);
    }
    let took = started.elapsed();
    anonymous.sort();
    bearer.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("{n} sequential GETs per arm, alternating, in {took:.2?}");
    println!("arm        p50_us   p90_us   p99_us");
    for (name, v) in [("anonymous", &anonymous), ("bearer", &bearer)] {
        println!(
            "{name:<9} {:>8.1} {:>8.1} {:>8.1}",
            us(percentile(v, 0.5)),
            us(percentile(v, 0.9)),
            us(percentile(v, 0.99))
        );
    }
    println!(
        "p50 added by verification: {:+.1} us",
        us(percentile(&bearer, 0.5)) - us(percentile(&anonymous, 0.5))
    );
}
