//! Password guessing (issue 11): per-account and per-address limits,
//! Retry-After, forwarded-for from trusted proxies, and shedding past the
//! hashing permits.

mod common;

use reqwest::StatusCode;

use common::{Reply, is_problem, retry_after, spawn_app_with};

#[tokio::test]
async fn guesses_past_the_account_limit_get_429_with_retry_after_even_with_the_right_password() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ACCOUNT", "3")]).await else {
        return;
    };
    for _ in 0..3 {
        let reply = app.guess("alice", None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    }
    let refused = app.guess("alice", None).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(is_problem(&refused));
    assert_eq!(refused.body["scope"], "account");
    let after = retry_after(&refused);
    assert!(
        (1..=60).contains(&after),
        "Retry-After {after}: within the 60 s window"
    );
    let right = app.login("alice").await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked for the window"
    );
    assert_eq!(
        app.login("bob").await.status,
        StatusCode::OK,
        "other accounts unaffected"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn successful_logins_use_up_no_attempts() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ACCOUNT", "2")]).await else {
        return;
    };
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    for _ in 0..5 {
        let reply = app.login("carol").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the third failure is over the limit of 2; the five successes cost nothing"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_concurrent_burst_at_one_account_gets_past_the_limit_by_at_most_the_other_permits() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "5"),
            ("PASSWORD_HASH_PERMITS", "2"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "60000"),
        ],
    )
    .await
    else {
        return;
    };
    let replies = futures::future::join_all((0..40).map(|_| app.guess("dave", None))).await;
    let count = |s: StatusCode| replies.iter().filter(|r| r.status == s).count();
    let (ran, refused) = (
        count(StatusCode::BAD_REQUEST),
        count(StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(ran + refused, 40, "only 400s and 429s");
    assert!(
        (5..=6).contains(&ran),
        "limit 5, 2 permits: 5 or 6 guesses may reach the hasher, {ran} did"
    );
    assert_eq!(
        app.guess("dave", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_successful_logins_of_one_account_are_never_throttled() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "2"),
            ("LOGIN_FAILURES_PER_ADDRESS", "2"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "60000"),
        ],
    )
    .await
    else {
        return;
    };
    let replies = futures::future::join_all((0..20).map(|_| app.login("alice"))).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn guesses_spread_over_accounts_are_limited_per_address() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ADDRESS", "3")]).await else {
        return;
    };
    for user in ["u1", "u2", "u3"] {
        assert_eq!(app.guess(user, None).await.status, StatusCode::BAD_REQUEST);
    }
    let refused = app.guess("u4", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["scope"], "address");
    let spoofed = app.guess("u5", Some("10.9.8.7")).await;
    assert_eq!(
        spoofed.status,
        StatusCode::TOO_MANY_REQUESTS,
        "X-Forwarded-For from an untrusted peer is ignored"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn refused_guesses_at_one_account_do_not_use_up_the_address_budget() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "2"),
            ("LOGIN_FAILURES_PER_ADDRESS", "4"),
        ],
    )
    .await
    else {
        return;
    };
    for _ in 0..10 {
        app.guess("alice", None).await;
    }
    assert_eq!(
        app.guess("alice", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // 2 failures counted for the address, not 11: two more guesses elsewhere run.
    assert_eq!(app.guess("bob", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    let over = app.guess("dave", None).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.body["scope"], "address");
    app.cleanup().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_for_names_the_client() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ADDRESS", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await
    else {
        return;
    };
    for user in ["u1", "u2"] {
        assert_eq!(
            app.guess(user, Some("10.0.0.1")).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        app.guess("u3", Some("10.0.0.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.guess("u4", Some("6.6.6.6, 10.0.0.2")).await.status,
        StatusCode::BAD_REQUEST,
        "another client behind the proxy has its own budget (right-most entry)"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn checks_beyond_the_permits_are_shed_with_503_and_retry_after_and_count_no_failure() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("PASSWORD_HASH_PERMITS", "1"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "1"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "1000"),
            ("LOGIN_FAILURES_PER_ADDRESS", "24"),
        ],
    )
    .await
    else {
        return;
    };
    let users: Vec<String> = (0..24).map(|i| format!("nobody-{i}")).collect();
    let replies = futures::future::join_all(users.iter().map(|u| app.guess(u, None))).await;
    let shed: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let ran = replies
        .iter()
        .filter(|r| r.status == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!(shed.len() + ran, 24, "only 400s and 503s");
    assert!(
        ran >= 1 && !shed.is_empty(),
        "ran {ran}, shed {}",
        shed.len()
    );
    for reply in &shed {
        assert!(is_problem(reply));
        assert!(retry_after(reply) >= 1);
        assert_eq!(reply.body["type"], "/problems/busy");
    }
    // Shed checks count no failure: with the address limit at 24, only the
    // checks that ran used it up, so the next guess is not refused.
    let next = app.guess("nobody-next", None).await;
    assert_ne!(next.status, StatusCode::TOO_MANY_REQUESTS, "{}", next.body);
    assert_eq!(app.login("alice").await.status, StatusCode::OK);
    app.cleanup().await;
}
