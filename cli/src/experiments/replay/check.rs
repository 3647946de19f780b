//! The pure check: what every client saw per key, against the rows
//! Postgres holds. No I/O, so every invariant has a test fed failing
//! evidence.

use std::collections::BTreeMap;

use super::Params;
use super::act::KeyResult;
use super::evidence::Evidence;
use crate::run::Invariant;

/// Rows beyond the one each key may hold.
pub fn duplicate_rows(ev: &Evidence) -> i64 {
    ev.rows.values().map(|c| (c - 1).max(0)).sum()
}

pub fn invariants(
    p: &Params,
    table: &str,
    keys: &BTreeMap<String, KeyResult>,
    ev: &Evidence,
) -> Vec<Invariant> {
    let bad = |f: &dyn Fn(&KeyResult) -> bool| -> Vec<&str> {
        keys.iter()
            .filter(|(_, r)| f(r))
            .map(|(k, _)| k.as_str())
            .collect()
    };
    let show = |v: &[&str]| {
        if v.is_empty() {
            "every key".to_string()
        } else {
            format!("{} key(s) off, e.g. {}", v.len(), v[0])
        }
    };
    let n = u64::from(p.n);
    let one_created = bad(&|r| r.created != 1);
    let replays = bad(&|r| r.replayed != n - 1);
    let same = bad(&|r| r.claim_ids.len() != 1 || r.bodies.len() != 1);
    let rows = |k: &str| ev.rows.get(k).copied().unwrap_or(0);
    let row_bad: Vec<String> = keys
        .keys()
        .filter(|k| rows(k) != 1)
        .map(|k| format!("{k}: {}", rows(k)))
        .collect();
    let mismatch = bad(&|r| r.mismatch_status != Some(422) || r.row_unchanged != Some(true));
    let fivexx: u64 = keys
        .values()
        .map(|r| {
            r.other
                .iter()
                .filter(|s| s.starts_with('5') || s.starts_with("error"))
                .count() as u64
        })
        .sum();
    vec![
        Invariant::check(
            "exactly one 201 created per key",
            one_created.is_empty(),
            format!("1 per key × {}", p.keys),
            show(&one_created),
            "responses without Idempotent-Replayed",
        ),
        Invariant::check(
            "N−1 replays per key",
            replays.is_empty(),
            format!("{} per key", n - 1),
            show(&replays),
            "201 responses with Idempotent-Replayed: true",
        ),
        Invariant::check(
            "every response for a key names one claim id, byte-identical body",
            same.is_empty(),
            "1 claim id and 1 distinct body per key",
            show(&same),
            "claim_id and raw bytes of every 201 body, compared per key",
        ),
        Invariant::check(
            "exactly one row per key in Postgres",
            row_bad.is_empty(),
            format!("1 row × {} keys", p.keys),
            if row_bad.is_empty() {
                "1 row for every key".into()
            } else {
                format!("{} key(s) with ≠1 row, e.g. {}", row_bad.len(), row_bad[0])
            },
            format!("SELECT idempotency_key, count(*) FROM {table} GROUP BY 1"),
        ),
        Invariant::check(
            "a different body under a used key got 422 and changed nothing",
            mismatch.is_empty(),
            "422 and the row as before, every key",
            show(&mismatch),
            "status of the mismatched request; the key's rows read before and after",
        ),
        Invariant::equal(
            "no 5xx or transport error",
            0,
            fivexx,
            "every response, counted",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Verdict;

    const N: u32 = 3;

    fn params() -> Params {
        Params {
            n: N,
            keys: 1,
            control: false,
        }
    }

    /// A key that behaved: one created, N−1 replays of the same body, the
    /// mismatch refused and the row unchanged; one row in Postgres.
    fn good() -> (BTreeMap<String, KeyResult>, Evidence) {
        let kr = KeyResult {
            created: 1,
            replayed: u64::from(N - 1),
            claim_ids: ["c-1".to_string()].into(),
            bodies: [b"{\"claim_id\":\"c-1\"}".to_vec()].into(),
            mismatch_status: Some(422),
            row_unchanged: Some(true),
            ..Default::default()
        };
        let ev = Evidence {
            rows: [("k".to_string(), 1)].into(),
        };
        ([("k".to_string(), kr)].into(), ev)
    }

    fn verdict(keys: &BTreeMap<String, KeyResult>, ev: &Evidence, name: &str) -> Verdict {
        invariants(&params(), "claims.claims", keys, ev)
            .into_iter()
            .find(|i| i.name == name)
            .map(|i| i.verdict)
            .unwrap()
    }

    #[test]
    fn a_key_that_was_created_once_and_replayed_to_the_rest_passes_every_invariant() {
        let (keys, ev) = good();
        let all = invariants(&params(), "claims.claims", &keys, &ev);
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|i| i.verdict == Verdict::Pass), "{all:?}");
        assert_eq!(duplicate_rows(&ev), 0);
    }

    #[test]
    fn two_creations_under_one_key_fail_the_created_and_replay_counts() {
        let (mut keys, ev) = good();
        let k = keys.get_mut("k").unwrap();
        k.created = 2;
        k.replayed = u64::from(N - 2);
        assert_eq!(
            verdict(&keys, &ev, "exactly one 201 created per key"),
            Verdict::Fail
        );
        assert_eq!(verdict(&keys, &ev, "N−1 replays per key"), Verdict::Fail);
    }

    #[test]
    fn two_claim_ids_or_two_bodies_for_one_key_fail_byte_identity() {
        let name = "every response for a key names one claim id, byte-identical body";
        let (mut keys, ev) = good();
        keys.get_mut("k").unwrap().claim_ids.insert("c-2".into());
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
        let (mut keys, ev) = good();
        keys.get_mut("k").unwrap().bodies.insert(b"other".to_vec());
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
    }

    #[test]
    fn two_rows_or_none_for_a_key_fail_one_row_per_key() {
        let name = "exactly one row per key in Postgres";
        let (keys, mut ev) = good();
        ev.rows.insert("k".into(), 2);
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
        assert_eq!(duplicate_rows(&ev), 1);
        ev.rows.clear();
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
    }

    #[test]
    fn an_accepted_mismatch_or_a_changed_row_fails_the_422_invariant() {
        let name = "a different body under a used key got 422 and changed nothing";
        let (mut keys, ev) = good();
        keys.get_mut("k").unwrap().mismatch_status = Some(201);
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
        let (mut keys, ev) = good();
        keys.get_mut("k").unwrap().row_unchanged = Some(false);
        assert_eq!(verdict(&keys, &ev, name), Verdict::Fail);
    }

    #[test]
    fn a_5xx_or_a_transport_error_fails_no_5xx_and_a_4xx_does_not() {
        let name = "no 5xx or transport error";
        for (other, want) in [
            ("503", Verdict::Fail),
            ("error: timeout", Verdict::Fail),
            ("409", Verdict::Pass),
        ] {
            let (mut keys, ev) = good();
            keys.get_mut("k").unwrap().other = vec![other.into()];
            assert_eq!(verdict(&keys, &ev, name), want, "{other}");
        }
    }
}
