//! `--hdr-out DIR`: the run's histograms in the standard HdrHistogram
//! interval log format (V2 + deflate, base64), one interval per histogram
//! spanning the load, tagged `raw:<transaction>`, `corrected:<transaction>`
//! and `failed:<transaction>` (the failed requests' latencies: its count is
//! the error count). After each transaction's histograms, one comment line
//! `#storefront-outcomes {"tx":…,"outcomes":{"200":n,"error: connect":m}}`
//! carries its exact count per status and error kind: histograms hold
//! latencies, not statuses, and comments keep the file a valid interval log.
//! Logs from several load machines merge with `storefront report merge`
//! (exact counts added up) — or with any HdrHistogram tool (histograms only).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use serde::{Deserialize, Serialize};

use super::recorder::TxTally;
use super::summary::{LoadReport, TxReport};

const KINDS: [&str; 3] = ["raw", "corrected", "failed"];
/// Starts the comment line (after its `#`) that carries exact counts.
const COUNTS: &str = "storefront-outcomes ";

/// One transaction's exact outcome counts, as a comment line's JSON.
#[derive(Serialize, Deserialize)]
struct Counts {
    tx: String,
    outcomes: BTreeMap<String, u64>,
}

/// Logs merged: one report per transaction (by tag), the window from the
/// earliest interval start to the latest end, and which files carried no
/// exact counts (then every transaction's `outcomes` is left empty: a sum
/// over some of the machines would not be exact).
pub struct Merged {
    pub transactions: Vec<TxReport>,
    pub window_s: f64,
    pub uncounted: Vec<PathBuf>,
}

/// Writes `DIR/<profile>-<run tag>.hlog`; returns its path.
pub fn write(dir: &Path, report: &LoadReport, started: SystemTime) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}-{}.hlog", report.profile, report.run_tag));
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "storefront load profile={} run={} model={} target={}",
            report.profile, report.run_tag, report.model, report.target
        ))
        .add_comment("values in microseconds; tags raw:/corrected:/failed:<scenario/transaction>")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut buf, &mut ser)?;
    let window = Duration::from_secs_f64(report.window_s);
    for tx in &report.transactions {
        for (kind, h) in KINDS
            .iter()
            .zip([&tx.tally.raw, &tx.tally.corrected, &tx.tally.failed])
        {
            let tag = format!("{kind}:{}", tx.name);
            let tag =
                Tag::new(&tag).ok_or_else(|| anyhow!("`{}` cannot be an HDR log tag", tx.name))?;
            w.write_histogram(h, Duration::ZERO, window, Some(tag))
                .map_err(|e| anyhow!("cannot write the {kind} histogram of {}: {e}", tx.name))?;
        }
        let counts = Counts {
            tx: tx.name.clone(),
            outcomes: tx.tally.outcomes.clone(),
        };
        w.write_comment(&format!("{COUNTS}{}", serde_json::to_string(&counts)?))?;
    }
    std::fs::write(&path, &buf).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads and merges interval logs: histograms with the same tag add up;
/// exact counts add up when every file carries them and each agrees with
/// its own raw histogram's count.
pub fn merge(files: &[PathBuf]) -> Result<Merged> {
    let mut tallies: BTreeMap<String, TxTally> = BTreeMap::new();
    let mut uncounted = Vec::new();
    let (mut first, mut last) = (f64::MAX, f64::MIN);
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let mut base = 0.0f64;
        let mut any = false;
        // This file's requests per transaction, to check its counts against.
        let mut requests: BTreeMap<String, u64> = BTreeMap::new();
        for entry in IntervalLogIterator::new(&bytes) {
            let entry = entry.map_err(|e| {
                anyhow!("{}: not an HdrHistogram interval log ({e:?})", f.display())
            })?;
            match entry {
                LogEntry::BaseTime(t) => base = t.as_secs_f64(),
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(i) => {
                    any = true;
                    let start = base + i.start_timestamp().as_secs_f64();
                    first = first.min(start);
                    last = last.max(start + i.duration().as_secs_f64());
                    let tag = i.tag().map_or("raw:(untagged)", |t| t.as_str());
                    let (kind, label) = match tag.split_once(':') {
                        Some((k, l)) if KINDS.contains(&k) => (k, l),
                        _ => ("raw", tag),
                    };
                    let h = decode(i.encoded_histogram())
                        .with_context(|| format!("{}: histogram `{tag}`", f.display()))?;
                    let t = tallies.entry(label.to_owned()).or_default();
                    let slot = match kind {
                        "corrected" => &mut t.corrected,
                        "failed" => &mut t.failed,
                        _ => {
                            *requests.entry(label.to_owned()).or_default() += h.len();
                            &mut t.raw
                        }
                    };
                    slot.add(&h).map_err(|e| {
                        anyhow!("{}: `{tag}` does not fit 1 µs..1 h: {e:?}", f.display())
                    })?;
                }
            }
        }
        if !any {
            bail!("{}: no histogram in it", f.display());
        }
        let counts = read_counts(&bytes).with_context(|| format!("{}", f.display()))?;
        if counts.is_empty() {
            uncounted.push(f.clone());
            continue;
        }
        for (label, n) in &requests {
            let outcomes = counts.get(label).with_context(|| {
                format!(
                    "{}: `{label}` has histograms but no outcome counts",
                    f.display()
                )
            })?;
            let sum: u64 = outcomes.values().sum();
            if sum != *n {
                bail!(
                    "{}: `{label}`: its outcome counts add up to {sum}, its raw histogram holds {n} requests",
                    f.display()
                );
            }
            let t = tallies.entry(label.clone()).or_default();
            for (k, v) in outcomes {
                *t.outcomes.entry(k.clone()).or_default() += v;
            }
        }
        if let Some(extra) = counts.keys().find(|l| !requests.contains_key(*l)) {
            bail!(
                "{}: outcome counts for `{extra}`, which has no histogram",
                f.display()
            );
        }
    }
    let window_s = if last > first { last - first } else { 0.0 };
    let transactions = tallies
        .into_iter()
        .map(|(name, mut t)| {
            if !uncounted.is_empty() {
                t.outcomes.clear();
            }
            TxReport::new(name, t, window_s)
        })
        .collect();
    Ok(Merged {
        transactions,
        window_s,
        uncounted,
    })
}

/// The `#storefront-outcomes` comment lines of one log, by transaction.
fn read_counts(bytes: &[u8]) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut out = BTreeMap::new();
    for (n, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
        let Some(json) = line.strip_prefix('#').and_then(|l| l.strip_prefix(COUNTS)) else {
            continue;
        };
        let c: Counts = serde_json::from_str(json)
            .with_context(|| format!("line {}: unreadable outcome counts", n + 1))?;
        if out.insert(c.tx.clone(), c.outcomes).is_some() {
            bail!("line {}: `{}` counted twice", n + 1, c.tx);
        }
    }
    Ok(out)
}

fn decode(b64: &str) -> Result<Histogram<u64>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64)?;
    Deserializer::new()
        .deserialize(&mut Cursor::new(raw))
        .map_err(|e| anyhow!("cannot decode: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::recorder::{Recorder, Sample};
    use crate::run::Verdict;

    fn report() -> LoadReport {
        let r = Recorder::new(2, 2);
        for i in 0..1000u64 {
            r.record(
                i as usize,
                Sample {
                    tx: (i % 2) as usize,
                    raw: Duration::from_micros(100 + i * 7),
                    corrected: Some(Duration::from_micros(200 + i * 7)),
                    outcome: if i % 100 == 0 {
                        "error: connect"
                    } else {
                        "200"
                    },
                    ok: i % 100 != 0,
                },
            );
        }
        let transactions = r
            .finish()
            .into_iter()
            .enumerate()
            .map(|(i, t)| TxReport::new(format!("shop/t{i}"), t, 4.0))
            .collect();
        LoadReport {
            profile: "p".into(),
            description: String::new(),
            model: "closed".into(),
            target: "direct".into(),
            seed: Some(1),
            run_tag: "a1b2c3d4".into(),
            verdict: Verdict::Pass,
            window_s: 4.0,
            corrected_means: String::new(),
            transactions,
            thresholds: vec![],
            invariants: vec![],
            measurements: vec![],
            took_ms: 0,
            run: Default::default(),
        }
    }

    #[test]
    fn histograms_round_trip_through_the_interval_log_and_merge_adds_them() {
        let dir = tempfile::tempdir().unwrap();
        let rep = report();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let path = write(dir.path(), &rep, t0).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("Tag=raw:shop/t0,")
        );

        let m = merge(std::slice::from_ref(&path)).unwrap();
        let (txs, window) = (m.transactions, m.window_s);
        assert!(m.uncounted.is_empty());
        assert!((window - 4.0).abs() < 1e-3, "{window}");
        assert_eq!(txs.len(), 2);
        for (a, b) in rep.transactions.iter().zip(&txs) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.tally.raw, b.tally.raw);
            assert_eq!(a.tally.corrected, b.tally.corrected);
            assert_eq!((a.requests, a.errors), (b.requests, b.errors));
            assert_eq!(a.outcomes, b.outcomes);
            assert_eq!(
                a.raw.as_ref().unwrap().p99_ms,
                b.raw.as_ref().unwrap().p99_ms
            );
        }

        // A second machine's log of the same window: counts add, the window stays.
        let other = tempfile::tempdir().unwrap();
        let path2 = write(other.path(), &rep, t0).unwrap();
        let m = merge(&[path, path2]).unwrap();
        let (txs2, window2) = (m.transactions, m.window_s);
        assert_eq!(txs2[0].requests, 2 * rep.transactions[0].requests);
        let doubled: BTreeMap<String, u64> = rep.transactions[0]
            .outcomes
            .iter()
            .map(|(k, v)| (k.clone(), 2 * v))
            .collect();
        assert_eq!(txs2[0].outcomes, doubled);
        assert_eq!(doubled["error: connect"], 2 * 10);
        assert_eq!(txs2[0].errors, 2 * rep.transactions[0].errors);
        assert!((window2 - 4.0).abs() < 1e-3);
        assert!((txs2[0].rps - 2.0 * rep.transactions[0].rps).abs() < 1e-6);
    }

    /// The log with its `#storefront-outcomes` lines edited by `f`.
    fn edited(dir: &Path, f: impl Fn(&str) -> Option<String>) -> PathBuf {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let path = write(dir, &report(), t0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let out: Vec<String> = text
            .lines()
            .filter_map(|l| {
                if l.starts_with(&format!("#{COUNTS}")) {
                    f(l)
                } else {
                    Some(l.to_owned())
                }
            })
            .collect();
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn a_log_without_counts_still_merges_but_no_outcome_is_claimed_exact() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let counted = write(a.path(), &report(), t0).unwrap();
        let bare = edited(b.path(), |_| None);
        let m = merge(&[counted, bare.clone()]).unwrap();
        assert_eq!(m.uncounted, vec![bare]);
        assert_eq!(m.transactions[0].requests, 2 * 500);
        assert!(m.transactions.iter().all(|t| t.outcomes.is_empty()));
    }

    #[test]
    fn counts_that_disagree_with_the_histogram_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = edited(dir.path(), |l| {
            Some(l.replace("\"200\":490", "\"200\":491"))
        });
        let e = format!("{:#}", merge(&[p]).err().unwrap());
        assert!(e.contains("add up to 501"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let p = edited(dir.path(), |l| Some(l.replace("{\"tx", "{tx")));
        let e = format!("{:#}", merge(&[p]).err().unwrap());
        assert!(e.contains("unreadable outcome counts"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.hlog");
        std::fs::write(&p, "hello\n").unwrap();
        let e = merge(&[p]).err().unwrap().to_string();
        assert!(e.contains("x.hlog"), "{e}");
    }
}
