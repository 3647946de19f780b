//! The webhook invariants: forged and stale webhooks refused and changing
//! nothing, genuine re-deliveries acknowledged.

use std::collections::BTreeMap;

use super::Evidence;
use crate::run::Invariant;

/// Forged and re-delivered webhooks.
pub(super) fn webhook_invariants(ev: &Evidence) -> Vec<Invariant> {
    let mut out = Vec::new();
    let refused = ev
        .forged
        .iter()
        .filter(|(_, got)| forgery_refused(got))
        .count();
    let name = "forged and stale webhooks were refused and changed nothing";
    out.push(if ev.forged.is_empty() {
        Invariant::unknown(
            name,
            "400/401 or not applied, none applied",
            "no forged webhook was sent",
        )
    } else {
        let counts = ev
            .forged
            .iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, (_, got)| {
                *m.entry(got.as_str()).or_default() += 1;
                m
            });
        Invariant::check(
            name,
            refused == ev.forged.len() && ev.forged_applied == 0,
            format!(
                "{} × 400/401 (or, correctly signed, 2xx not applied), 0 applied",
                ev.forged.len()
            ),
            format!(
                "{refused} refused ({}), {} applied",
                counts
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                ev.forged_applied
            ),
            "HTTP statuses and outcomes of the forged POSTs; payments.webhook_events rows with \
             their event ids and outcome applied",
        )
    });

    let replays: u64 = ev.replays.values().sum();
    let replays_ok: u64 = ev
        .replays
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, v)| v)
        .sum();
    let name = "re-delivered webhooks were acknowledged";
    out.push(if replays == 0 {
        Invariant::unknown(name, "2xx", "no webhook was re-delivered")
    } else {
        Invariant::check(
            name,
            replays_ok == replays,
            format!("{replays} × 2xx (deduplicated by event id)"),
            ev.replays
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            "HTTP statuses of the run's re-deliveries (1–3 per genuine webhook, out of order)",
        )
    });

    out
}

/// How a correctly signed forgery's answer is labelled (`signed, 200
/// unconfirmed`): a forgery the signature check cannot refuse.
pub const SIGNED: &str = "signed, ";

/// Whether a forged webhook's answer shows it was refused: a badly signed
/// one got 400/401 from the signature check; a correctly signed one
/// ([`SIGNED`]) got a 2xx whose reported outcome is anything but applied
/// (the provider's record didn't back it, or the state machine had no use
/// for it).
pub(super) fn forgery_refused(got: &str) -> bool {
    match got.strip_prefix(SIGNED) {
        None => got == "400" || got == "401",
        Some(answer) => answer
            .split_once(' ')
            .is_some_and(|(status, outcome)| status.starts_with('2') && outcome != "applied"),
    }
}
