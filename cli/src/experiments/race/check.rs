//! The pure check: what the clients saw, against the stock Postgres holds.
//! No I/O, so every invariant has a test fed failing evidence.

use super::Params;
use super::act::{Acted, Convergence, LABEL_RACE};
use super::evidence::Evidence;
use super::plan::Plan;
use crate::run::Invariant;

/// Updates lost in phase 1: 2xx answers the stock does not show.
pub fn lost(plan: &Plan, acted: &Acted) -> i64 {
    plan.rounds
        .iter()
        .zip(&acted.rounds)
        .map(|(r, seen)| seen.won() as i64 - i64::from(r.start_stock - seen.stock_after_race))
        .sum()
}

/// `every round` when nothing was off, else the offenders.
fn listed(bad: &[String], all_well: &str) -> String {
    if bad.is_empty() {
        all_well.to_string()
    } else {
        bad.join("; ")
    }
}

pub fn invariants(p: &Params, plan: &Plan, acted: &Acted, ev: &Evidence) -> Vec<Invariant> {
    let (mut winners, mut losers, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for (r, seen) in plan.rounds.iter().zip(&acted.rounds) {
        let round = r.round;
        if seen.won() != 1 {
            winners.push(format!("round {round}: {}", seen.won()));
        }
        if seen.refused() != u64::from(p.n - 1) {
            losers.push(format!("round {round}: {}", seen.refused()));
        }
        if seen.other() != 0 {
            others.push(format!("round {round}: {}", seen.race.summary(LABEL_RACE)));
        }
    }
    let unseen = plan.rounds.len().saturating_sub(acted.rounds.len());
    if unseen > 0 {
        winners.push(format!("{unseen} round(s) never raced"));
    }
    let mut out = vec![
        Invariant::check(
            "exactly one 2xx per round",
            winners.is_empty(),
            format!("1 winner in each of {} round(s)", p.rounds),
            listed(&winners, "1 in every round"),
            format!(
                "HTTP statuses of the racing requests: {}",
                acted.outcomes.summary(LABEL_RACE)
            ),
        ),
        Invariant::check(
            "exactly N−1 412s per round",
            losers.is_empty(),
            format!("{} per round", p.n - 1),
            listed(&losers, &format!("{} in every round", p.n - 1)),
            "412 Precondition Failed count per round",
        ),
        Invariant::check(
            "no other status",
            others.is_empty(),
            "only 2xx and 412",
            listed(&others, "none"),
            "every racing request's outcome, counted",
        ),
        Invariant::equal(
            "no lost update (stock fell by the number of 2xx)",
            0,
            lost(plan, acted),
            "Postgres: SELECT stock FROM catalog.products after each round vs successful responses",
        ),
    ];
    if !p.control {
        out.push(convergence(p, plan, acted));
        out.push(retries(p, plan, acted, ev));
    }
    out
}

fn convergence(p: &Params, plan: &Plan, acted: &Acted) -> Invariant {
    let name = "both replicas serve the new version within the bound";
    let expected = format!("≤ {} ms after the winning write", p.convergence_bound_ms);
    let judged = acted
        .rounds
        .iter()
        .filter(|s| s.convergence != Convergence::NoWinner)
        .count();
    if judged == 0 {
        return Invariant::unknown(
            name,
            expected,
            "no round had a winner whose version could be awaited",
        );
    }
    let late: Vec<String> = plan
        .rounds
        .iter()
        .zip(&acted.rounds)
        .filter(|(_, s)| s.convergence == Convergence::NotWithinBound)
        .map(|(r, _)| format!("round {}", r.round))
        .collect();
    Invariant::check(
        name,
        late.is_empty(),
        expected,
        if late.is_empty() {
            "every round".to_string()
        } else {
            format!("not converged: {}", late.join(", "))
        },
        "GET /products/{id} ETag polled on every catalog replica",
    )
}

fn retries(p: &Params, plan: &Plan, acted: &Acted, ev: &Evidence) -> Invariant {
    let mut bad = Vec::new();
    for (i, (r, seen)) in plan.rounds.iter().zip(&acted.rounds).enumerate() {
        let before = seen.stock_after_race;
        let after = ev.final_stock.get(i).copied();
        let landed = seen.landed.unwrap_or(0);
        if landed != p.n || after != Some(before - p.n as i32) {
            let after = after.map_or("?".to_string(), |a| a.to_string());
            bad.push(format!(
                "round {}: {landed}/{} landed, stock {before} → {after}",
                r.round, p.n
            ));
        }
    }
    Invariant::check(
        "retrying clients all land; final stock = start − 1 − N",
        bad.is_empty(),
        format!("{} decrements landed per round", p.n),
        listed(&bad, "every round"),
        "Postgres stock before and after phase 2",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::experiments::race::act::RoundSeen;
    use crate::experiments::race::plan::{Round, start_stock};
    use crate::run::{Outcomes, Verdict};

    const N: u32 = 4;

    fn params(control: bool) -> Params {
        Params {
            n: N,
            rounds: 1,
            control,
            convergence_bound_ms: 2000,
        }
    }

    fn plan() -> Plan {
        Plan {
            rounds: vec![Round {
                round: 0,
                id: 7,
                start_stock: start_stock(N),
            }],
            urls: vec!["http://127.0.0.1:1".into()],
            lab_token: None,
        }
    }

    /// One round with these racing statuses; the stock fell by `fell` in
    /// phase 1 and by `fell2` in phase 2, where `landed` clients landed.
    fn acted(statuses: &[&str], fell: i32, landed: u32, fell2: i32) -> (Acted, Evidence) {
        let mut race = Outcomes::default();
        for s in statuses {
            race.add(LABEL_RACE, *s);
        }
        let after = start_stock(N) - fell;
        let mut acted = Acted::default();
        acted.outcomes.merge(&race);
        acted.rounds.push(RoundSeen {
            race,
            stock_after_race: after,
            convergence: Convergence::Within(Duration::from_millis(3)),
            landed: Some(landed),
        });
        let ev = Evidence {
            final_stock: vec![after - fell2],
        };
        (acted, ev)
    }

    fn verdicts(p: &Params, acted: &Acted, ev: &Evidence) -> Vec<(String, Verdict)> {
        invariants(p, &plan(), acted, ev)
            .into_iter()
            .map(|i| (i.name, i.verdict))
            .collect()
    }

    fn verdict_of(v: &[(String, Verdict)], name: &str) -> Verdict {
        v.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap()
    }

    #[test]
    fn one_winner_the_rest_412_and_every_retry_landed_passes_every_invariant() {
        let (a, ev) = acted(&["200", "412", "412", "412"], 1, N, N as i32);
        let v = verdicts(&params(false), &a, &ev);
        assert_eq!(v.len(), 6);
        assert!(v.iter().all(|(_, v)| *v == Verdict::Pass), "{v:?}");
    }

    #[test]
    fn two_winners_fail_the_one_winner_and_the_412_counts() {
        let (a, ev) = acted(&["200", "200", "412", "412"], 2, N, N as i32);
        let v = verdicts(&params(false), &a, &ev);
        assert_eq!(verdict_of(&v, "exactly one 2xx per round"), Verdict::Fail);
        assert_eq!(verdict_of(&v, "exactly N−1 412s per round"), Verdict::Fail);
        assert_eq!(verdict_of(&v, "no other status"), Verdict::Pass);
    }

    #[test]
    fn a_5xx_among_the_racers_fails_no_other_status() {
        let (a, ev) = acted(&["200", "412", "412", "503"], 1, N, N as i32);
        let inv = invariants(&params(false), &plan(), &a, &ev);
        let other = inv.iter().find(|i| i.name == "no other status").unwrap();
        assert_eq!(other.verdict, Verdict::Fail);
        assert!(other.observed.contains("503"), "{}", other.observed);
    }

    #[test]
    fn four_2xx_that_moved_the_stock_by_one_are_three_lost_updates() {
        // The control arm's blind path: every write "wins", one survives.
        let (a, ev) = acted(&["200", "200", "200", "200"], 1, 0, 0);
        assert_eq!(lost(&plan(), &a), 3);
        let inv = invariants(&params(true), &plan(), &a, &ev);
        assert_eq!(inv.len(), 4, "the control arm has no convergence or retry");
        let lost = inv
            .iter()
            .find(|i| i.name.starts_with("no lost update"))
            .unwrap();
        assert_eq!((lost.verdict, lost.observed.as_str()), (Verdict::Fail, "3"));
    }

    #[test]
    fn a_replica_that_never_served_the_winners_version_fails_convergence() {
        let (mut a, ev) = acted(&["200", "412", "412", "412"], 1, N, N as i32);
        a.rounds[0].convergence = Convergence::NotWithinBound;
        let v = verdicts(&params(false), &a, &ev);
        let name = "both replicas serve the new version within the bound";
        assert_eq!(verdict_of(&v, name), Verdict::Fail);
    }

    #[test]
    fn convergence_without_any_winner_cannot_be_judged() {
        let (mut a, ev) = acted(&["412", "412", "412", "412"], 0, N, N as i32);
        a.rounds[0].convergence = Convergence::NoWinner;
        let v = verdicts(&params(false), &a, &ev);
        let name = "both replicas serve the new version within the bound";
        assert_eq!(verdict_of(&v, name), Verdict::Unknown);
    }

    #[test]
    fn a_retry_that_never_landed_or_a_stock_that_moved_wrong_fails_phase_2() {
        let name = "retrying clients all land; final stock = start − 1 − N";
        let (a, ev) = acted(&["200", "412", "412", "412"], 1, N - 1, N as i32 - 1);
        assert_eq!(
            verdict_of(&verdicts(&params(false), &a, &ev), name),
            Verdict::Fail
        );
        let (a, ev) = acted(&["200", "412", "412", "412"], 1, N, N as i32 - 1);
        assert_eq!(
            verdict_of(&verdicts(&params(false), &a, &ev), name),
            Verdict::Fail
        );
    }
}
