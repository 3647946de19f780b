//! The token rules, probed while the credentials rotate underneath: each
//! probe gathers what identity, Redis and Postgres answered; the verdicts
//! are [`super::check`]'s.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::evidence::{Answer, ExpirySeen, JtiSeen, Probe, ReuseSeen, Rules};
use super::identity::{login_body, post, session_of, userinfo};
use crate::run::Lab;
use crate::run::accounts::password;

/// The answer as plain data (the error as its text).
fn answer(r: Result<(u16, Value), reqwest::Error>) -> Answer {
    r.map_err(|e| e.to_string())
}

pub async fn token_rules(lab: &Lab, admin: &str, base: &str) -> Rules {
    Rules {
        jti: revoked_jti(lab, base).await,
        reuse: reused_refresh(lab, base).await,
        expiry: expired_access(lab, admin, base).await,
    }
}

async fn redis_ttl(lab: &Lab, key: &str) -> anyhow::Result<i64> {
    let client = redis::Client::open(lab.state.endpoints.redis_url.as_str())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("TTL").arg(key).query_async(&mut c).await?)
}

/// Log in, userinfo, revoke, userinfo again, and the denylist key's TTL.
async fn revoked_jti(lab: &Lab, base: &str) -> Probe<JtiSeen> {
    let login = answer(post(&lab.http, &format!("{base}/token"), &login_body("alice")).await);
    let Ok((200, body)) = &login else {
        return Probe::NoLogin(login);
    };
    let (access, jti, ttl) = (
        body["access_token"].as_str().unwrap_or_default(),
        body["jti"].as_str().unwrap_or_default(),
        body["expires_in"].as_i64().unwrap_or_default(),
    );
    let before = answer(userinfo(&lab.http, &format!("{base}/userinfo"), access).await);
    let revoke = answer(
        post(
            &lab.http,
            &format!("{base}/revoke"),
            &json!({ "token": access }),
        )
        .await,
    );
    let after = answer(userinfo(&lab.http, &format!("{base}/userinfo"), access).await);
    let key_ttl = redis_ttl(lab, &format!("identity:revoked:{jti}"))
        .await
        .map_err(|e| e.to_string());
    Probe::Ran(JtiSeen {
        before,
        revoke,
        after,
        key_ttl,
        ttl,
    })
}

/// Refresh r1 → r2, r1 again, then r2; and the family's state in Postgres.
async fn reused_refresh(lab: &Lab, base: &str) -> Probe<ReuseSeen> {
    let url = format!("{base}/token");
    let refresh = |t: &str| json!({"grant_type": "refresh_token", "refresh_token": t});
    let login = answer(post(&lab.http, &url, &login_body("bob")).await);
    let Some(first) = login.as_ref().ok().and_then(|(_, b)| session_of(b)) else {
        return Probe::NoLogin(login);
    };
    let rotated = answer(post(&lab.http, &url, &refresh(&first.refresh)).await);
    let second = rotated.as_ref().ok().and_then(|(_, b)| session_of(b));
    let reused = answer(post(&lab.http, &url, &refresh(&first.refresh)).await);
    let successor = match &second {
        Some(s) => Some(answer(post(&lab.http, &url, &refresh(&s.refresh)).await)),
        None => None,
    };
    let family: Result<Option<String>, _> = sqlx::query_scalar(
        "SELECT f.revoked_reason FROM identity.refresh_families f \
         JOIN identity.refresh_tokens t ON t.family_id = f.id \
         WHERE t.token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&first.refresh)
    .fetch_one(&lab.pg)
    .await;
    Probe::Ran(ReuseSeen {
        rotated,
        reused,
        successor,
        family: family.map_err(|e| e.to_string()),
    })
}

/// A token minted with a 1 s lifetime (the lab-only `access_ttl_secs`),
/// polled every 100 ms for at most 5 s until refused.
async fn expired_access(lab: &Lab, admin: &str, base: &str) -> Probe<ExpirySeen> {
    let body = json!({"grant_type": "password", "username": "carol", "password": password("carol"), "access_ttl_secs": 1});
    let login = async {
        let r = lab
            .http
            .post(format!("{base}/token"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.json().await.unwrap_or(Value::Null)))
    }
    .await;
    let login = answer(login);
    let Some(s) = login.as_ref().ok().and_then(|(_, b)| session_of(b)) else {
        return Probe::NoLogin(login);
    };
    let t = Instant::now();
    let (mut accepted, mut last) = (0, None);
    while t.elapsed() < Duration::from_secs(5) {
        let r = answer(userinfo(&lab.http, &format!("{base}/userinfo"), &s.access).await);
        let ok = matches!(r, Ok((200, _)));
        last = Some(r);
        if !ok {
            break;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Probe::Ran(ExpirySeen {
        last,
        accepted,
        took_ms: t.elapsed().as_millis(),
    })
}
