//! `--hdr-out DIR`: the run's histograms in the standard HdrHistogram
//! interval log format (V2 + deflate, base64), one interval per histogram
//! spanning the load, tagged `raw:<transaction>`, `corrected:<transaction>`
//! and `failed:<transaction>` (the failed requests' latencies: its count is
//! the error count). Logs from several load machines merge with
//! `storefront report merge` — or with any HdrHistogram tool.

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

use super::recorder::TxTally;
use super::summary::{LoadReport, TxReport};

const KINDS: [&str; 3] = ["raw", "corrected", "failed"];

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
    }
    std::fs::write(&path, &buf).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads and merges interval logs: one tally per transaction (by tag), and
/// the window from the earliest interval start to the latest end.
pub fn merge(files: &[PathBuf]) -> Result<(Vec<TxReport>, f64)> {
    let mut tallies: BTreeMap<String, TxTally> = BTreeMap::new();
    let (mut first, mut last) = (f64::MAX, f64::MIN);
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let mut base = 0.0f64;
        let mut any = false;
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
                        _ => &mut t.raw,
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
    }
    let window = if last > first { last - first } else { 0.0 };
    Ok((
        tallies
            .into_iter()
            .map(|(name, t)| TxReport::new(name, t, window))
            .collect(),
        window,
    ))
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
    use crate::experiments::Verdict;
    use crate::load::recorder::{Recorder, Sample};

    fn report() -> LoadReport {
        let r = Recorder::new(2, 2);
        for i in 0..1000u64 {
            r.record(
                i as usize,
                Sample {
                    tx: (i % 2) as usize,
                    raw: Duration::from_micros(100 + i * 7),
                    corrected: Some(Duration::from_micros(200 + i * 7)),
                    outcome: "200",
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

        let (txs, window) = merge(std::slice::from_ref(&path)).unwrap();
        assert!((window - 4.0).abs() < 1e-3, "{window}");
        assert_eq!(txs.len(), 2);
        for (a, b) in rep.transactions.iter().zip(&txs) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.tally.raw, b.tally.raw);
            assert_eq!(a.tally.corrected, b.tally.corrected);
            assert_eq!((a.requests, a.errors), (b.requests, b.errors));
            assert_eq!(
                a.raw.as_ref().unwrap().p99_ms,
                b.raw.as_ref().unwrap().p99_ms
            );
        }

        // A second machine's log of the same window: counts add, the window stays.
        let other = tempfile::tempdir().unwrap();
        let path2 = write(other.path(), &rep, t0).unwrap();
        let (txs2, window2) = merge(&[path, path2]).unwrap();
        assert_eq!(txs2[0].requests, 2 * rep.transactions[0].requests);
        assert_eq!(txs2[0].errors, 2 * rep.transactions[0].errors);
        assert!((window2 - 4.0).abs() < 1e-3);
        assert!((txs2[0].rps - 2.0 * rep.transactions[0].rps).abs() < 1e-6);
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.hlog");
        std::fs::write(&p, "hello\n").unwrap();
        let e = merge(&[p]).unwrap_err().to_string();
        assert!(e.contains("x.hlog"), "{e}");
    }
}
