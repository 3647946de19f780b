//! The JSON log line, written directly: the same object tracing-subscriber's
//! JSON formatter writes (`timestamp`, `level`, `fields`, `target`, the
//! current `span`'s fields and `name`), with the span's `trace_id` and
//! `span_id` first (`super::ids`'s, or the OpenTelemetry layer's when spans
//! are exported).
//!
//! tracing-subscriber's formatter parses the span's stored fields back
//! into a `serde_json::Value` for every line and serializes them again,
//! and the ids had to be spliced in front of the finished line; one line a
//! request made that a tenth of the BFF's CPU under load (scripts/bench.sh
//! with BENCH_PERF=1). Here the stored fields (already a JSON object,
//! written by `JsonFields`) are copied as they are.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_opentelemetry::OtelData;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::ids::{Ascii, SpanIds, lower_hex};

/// The event formatter.
pub(super) struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        writer.write_char('{')?;
        if let Some(span) = &span {
            let extensions = span.extensions();
            if let Some(ids) = extensions.get::<SpanIds>() {
                writer.write_str("\"trace_id\":\"")?;
                writer.write_str(lower_hex::<32>(ids.trace).as_str())?;
                writer.write_str("\",\"span_id\":\"")?;
                writer.write_str(lower_hex::<16>(u128::from(ids.span)).as_str())?;
                writer.write_str("\",")?;
            } else if let Some((trace, span)) = extensions
                .get::<OtelData>()
                .and_then(|data| Some((data.trace_id()?, data.span_id()?)))
            {
                write!(writer, "\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",")?;
            }
        }
        writer.write_str("\"timestamp\":\"")?;
        match timestamp(std::time::SystemTime::now()) {
            Some(stamp) => writer.write_str(stamp.as_str())?,
            None => SystemTime.format_time(&mut writer)?,
        }
        write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
        Fields::write(&mut writer, true, |f| event.record(f))?;
        writer.write_str("},\"target\":")?;
        string(&mut writer, meta.target())?;
        if let Some(span) = &span {
            writer.write_str(",\"span\":")?;
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.as_str())
                .and_then(|f| f.strip_prefix('{')?.strip_suffix('}'))
                .filter(|inner| !inner.trim().is_empty());
            writer.write_char('{')?;
            if let Some(inner) = stored {
                writer.write_str(inner)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// `now` in UTC with microseconds, `2026-12-03T01:58:52.607509Z`, as
/// tracing-subscriber's `SystemTime` writes it, written digit by digit
/// instead of through seven padded `write!`s; None before 1970 or after
/// 9999 (the caller falls back to `SystemTime`).
fn timestamp(now: std::time::SystemTime) -> Option<Ascii<27>> {
    let since = now.duration_since(std::time::UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return None;
    }
    let of_day = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    Some(Ascii(out))
}

/// The date `days` after 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for days not before 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A span's fields as one JSON object, the object `JsonFields` writes:
/// numbers and booleans as such, everything else as a string. A field
/// recorded after the span was made is appended to the object; one that is
/// already in it is replaced, as `JsonFields` replaces it.
pub(super) struct SpanFields;

/// The most a thread's [`SCRATCH`] keeps between spans.
const SCRATCH_KEPT: usize = 16 * 1024;

thread_local! {
    /// Where a new span's fields are written first (see
    /// [`SpanFields::format_fields`]); kept, so it stops growing.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A span's object as [`SpanFields`] writes it, to `writer`.
fn span_object(writer: &mut Writer<'_>, fields: impl RecordFields) -> fmt::Result {
    writer.write_char('{')?;
    Fields::write(writer, true, |f| fields.record(f))?;
    writer.write_char('}')
}

impl<'w> FormatFields<'w> for SpanFields {
    /// A new span's `writer` is an empty `String` of its own: written to
    /// piece by piece, it grew five times a request span (from 8 bytes to
    /// 256; `callgrind`, about 1,100 instructions a BFF request). The
    /// object is written to a kept buffer and then copied in one piece, so
    /// the span's string is allocated once, at its size. A field whose
    /// `Debug` makes a span itself finds the buffer taken and writes
    /// directly.
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.clear();
                let written = span_object(&mut Writer::new(&mut *scratch), fields)
                    .and_then(|()| writer.write_str(&scratch));
                // One huge field must not keep a huge buffer.
                if scratch.capacity() > SCRATCH_KEPT {
                    *scratch = String::new();
                }
                written
            }
            Err(_) => span_object(&mut writer, fields),
        })
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        let mut again = AlreadyIn {
            object: &current.fields,
            found: false,
        };
        fields.record(&mut again);
        if again.found {
            return replace_fields(current, fields);
        }
        if !current.fields.ends_with('}') {
            return Err(fmt::Error);
        }
        current.fields.pop();
        let first = current.fields.ends_with('{');
        let recorded = Fields::write(&mut current.as_writer(), first, |f| fields.record(f));
        current.fields.push('}');
        recorded
    }
}

/// `fields` written over the members of `current` that have their names:
/// the object is parsed, the members replaced and the object written
/// again (the slow way, taken only when a field is recorded twice).
fn replace_fields(current: &mut FormattedFields<SpanFields>, fields: &Record<'_>) -> fmt::Result {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&current.fields).map_err(|_| fmt::Error)?;
    let mut added = String::new();
    SpanFields.format_fields(Writer::new(&mut added), fields)?;
    let added: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&added).map_err(|_| fmt::Error)?;
    object.extend(added);
    current.fields = serde_json::to_string(&object).map_err(|_| fmt::Error)?;
    Ok(())
}

/// Whether any recorded field's name is already a member name in `object`
/// (a match inside a string value only sends it the slow way).
struct AlreadyIn<'a> {
    object: &'a str,
    found: bool,
}

impl Visit for AlreadyIn<'_> {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        let name = field.name();
        self.found |= self.object.match_indices(name).any(|(at, _)| {
            self.object[..at].ends_with('"') && self.object[at + name.len()..].starts_with("\":")
        });
    }
}

/// An event's fields as JSON members: numbers and booleans as such, text
/// and anything else as a string (its `Debug`, which for `%x` is its
/// `Display`), as `tracing-serde` writes them.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl<'a, 'w> Fields<'a, 'w> {
    /// Writes the fields `record` visits as members of the object open in
    /// `out`; `first` when it has none yet.
    fn write(out: &'a mut Writer<'w>, first: bool, record: impl FnOnce(&mut Self)) -> fmt::Result {
        let mut members = Fields {
            out,
            first,
            result: Ok(()),
        };
        record(&mut members);
        members.result
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            let first = std::mem::take(&mut self.first);
            self.result = write_member(self.out, first, field, value);
        }
    }
}

/// `"name":value`, after a comma unless it is the `first`.
fn write_member(
    out: &mut Writer<'_>,
    first: bool,
    field: &Field,
    value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
) -> fmt::Result {
    if !first {
        out.write_char(',')?;
    }
    string(out, field.name())?;
    out.write_char(':')?;
    value(out)
}

impl Visit for Fields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes them as null.
        self.member(field, |w| match value.is_finite() {
            true => write!(w, "{value:?}"),
            false => w.write_str("null"),
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `s` as a JSON string.
fn string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string, as serde_json
/// does: `"` and `\`, and control characters (`\n`, `\t`… or `\u00XX`).
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            // Eight bytes at a time past the common case, nothing to escape.
            // The last few bytes are padded with a byte that needs nothing.
            let word = match bytes.get(i..i + 8) {
                Some(chunk) => u64::from_le_bytes(chunk.try_into().unwrap_or_default()),
                None => {
                    let mut padded = [b'a'; 8];
                    for (to, from) in padded.iter_mut().zip(&bytes[i..]) {
                        *to = *from;
                    }
                    u64::from_le_bytes(padded)
                }
            };
            if !needs_escape(word) {
                i = (i + 8).min(bytes.len());
                continue;
            }
            let b = bytes[i];
            i += 1;
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // `b` is ASCII, so both ends are on character boundaries.
            self.0.write_str(&s[start..i - 1])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i;
        }
        self.0.write_str(&s[start..])
    }
}

/// Whether any of the eight bytes in `word` is one JSON escapes: below
/// 0x20, `"` or `\`. The usual bit trick: `(x - 0x01…) & !x & 0x80…` is
/// non-zero exactly when some byte of `x` is zero, and with `0x20…` in
/// place of `0x01…`, when some byte is below 0x20.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below(word, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::super::tests::Lines;
    use super::*;

    fn events() {
        let span = tracing::info_span!("request", method = "GET", uri = %"/a?b=\"c\"", n = 3);
        let _e = span.enter();
        tracing::info!(
            latency = %format_args!("{} μs", 12),
            status = 200u16,
            ok = true,
            neg = -4i64,
            min = i64::MIN,
            max = u64::MAX,
            zero = 0u64,
            no = false,
            ratio = 0.5f64,
            text = "tab\there \"quoted\" back\\slash \u{1} bell",
            debug = ?Some("x"),
            "finished processing request"
        );
        tracing::warn!(nan = f64::NAN, "odd \n message");
        drop(_e);
        tracing::error!(outside = 1, "no span");
        // Fields recorded after the span was made: new ones, one made again
        // (`n`), and a value that looks like a member name.
        let span = tracing::info_span!(
            "product",
            n = 3,
            id = tracing::field::Empty,
            cache = tracing::field::Empty,
            note = tracing::field::Empty,
        );
        span.record("id", 42);
        span.record("note", "\"cache\":");
        span.record("cache", "l1");
        span.record("n", 4);
        span.in_scope(|| tracing::info!("served"));
        let bare = tracing::info_span!("bare", later = tracing::field::Empty);
        bare.in_scope(|| tracing::info!("before"));
        bare.record("later", true);
        bare.in_scope(|| tracing::info!("after"));
        // A field whose text makes a span of its own while the outer
        // span's fields are being written.
        struct Nested;
        impl fmt::Display for Nested {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                drop(tracing::info_span!("inner", k = "v"));
                f.write_str("outer text")
            }
        }
        let outer = tracing::info_span!("outer", nested = %Nested, big = "x".repeat(20_000));
        outer.in_scope(|| tracing::info!("nested"));
    }

    /// The lines a subscriber with `format` and `fields` writes for
    /// [`events`].
    fn lines<E, N>(format: E, fields: N) -> Lines
    where
        E: for<'w> FormatEvent<tracing_subscriber::Registry, N> + Send + Sync + 'static,
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let lines = Lines::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(fields)
            .event_format(format)
            .with_writer(lines.clone());
        {
            let _guard = crate::telemetry::tests::scoped(
                tracing_subscriber::Registry::default().with(layer),
            );
            events();
        }
        lines
    }

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escaped(&mut Writer::new(&mut out)).write_str(s).unwrap();
        out
    }

    #[test]
    fn escaping_matches_serde_json_at_every_offset() {
        // Every ASCII byte, and characters whose UTF-8 bytes look like `"`
        // or `\` once their high bit is dropped (0xA2, 0xDC), at every place
        // within and across the eight-byte steps.
        let mut specials: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        specials.extend(["\u{a2}", "\u{dc}", "\u{2028}", "\u{1f600}", "\u{7f}"].map(String::from));
        for special in &specials {
            for before in 0..17 {
                for after in [0, 1, 7, 8, 9] {
                    let s = format!("{}{special}{}", "a".repeat(before), "b".repeat(after));
                    let want = serde_json::to_string(&s).unwrap();
                    assert_eq!(format!("\"{}\"", escaped(&s)), want, "{s:?}");
                }
            }
        }
        let mixed = "GET /p?q=\"x\"\\y\n\u{1}ü\t€ and a longer tail with nothing to escape";
        assert_eq!(
            format!("\"{}\"", escaped(mixed)),
            serde_json::to_string(mixed).unwrap()
        );
    }

    #[test]
    fn the_word_test_agrees_with_the_byte_test() {
        let naive = |w: u64| {
            w.to_le_bytes()
                .iter()
                .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
        };
        // Every byte value in every lane, over a background of each byte.
        for fill in [0u8, 0x20, b'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
            for lane in 0..8 {
                for b in 0..=255u8 {
                    let mut bytes = [fill; 8];
                    bytes[lane] = b;
                    let w = u64::from_le_bytes(bytes);
                    assert_eq!(needs_escape(w), naive(w), "{bytes:?}");
                }
            }
        }
        // And pseudo-random words (a fixed xorshift sequence).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(needs_escape(x), naive(x), "{x:#x}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(secs * 1_000_000 + micros);
            timestamp(t).map(|s| s.as_str().to_owned())
        };
        for (secs, micros, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (951_868_799, 999_999, "2000-02-29T23:59:59.999999Z"),
            (1_709_251_199, 5, "2024-02-29T23:59:59.000005Z"),
            (1_796_254_732, 607_509, "2026-12-02T23:38:52.607509Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000000Z"),
        ] {
            assert_eq!(at(secs, micros).as_deref(), Some(text), "{secs}");
        }
        assert_eq!(at(253_402_300_800, 0), None, "year 10000");
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert!(timestamp(before).is_none());
    }

    #[test]
    fn a_timestamp_is_the_one_tracing_subscriber_writes_for_the_same_second() {
        // Ours and theirs read the clock one after the other; within one
        // second their texts agree up to the fraction. Tried again if the
        // second ticked over in between.
        for _ in 0..100 {
            let ours = timestamp(std::time::SystemTime::now()).unwrap();
            let mut theirs = String::new();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let (ours, theirs) = (&ours.as_str()[..20], &theirs[..20]);
            if ours == theirs {
                return;
            }
        }
        panic!("ours and tracing-subscriber's timestamps never agreed to the second");
    }

    #[test]
    fn lines_are_the_objects_tracing_subscribers_json_format_writes() {
        let standard = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true);
        let written = lines(JsonLine, SpanFields);
        let mut ours = written.json();
        let mut theirs = lines(standard, tracing_subscriber::fmt::format::JsonFields::new()).json();
        // Timestamps differ by the time between the two runs.
        for line in ours.iter_mut().chain(theirs.iter_mut()) {
            let ts = line.as_object_mut().unwrap().remove("timestamp").unwrap();
            assert!(ts.as_str().unwrap().ends_with('Z'), "{ts}");
        }
        assert_eq!(ours.len(), 7);
        assert_eq!(ours, theirs);
        assert_eq!(
            ours[3]["span"],
            serde_json::json!({"name": "product", "n": 4, "id": 42, "note": "\"cache\":", "cache": "l1"})
        );
        let served = written.text().lines().nth(3).unwrap().to_owned();
        assert_eq!(served.matches("\"n\":").count(), 1, "{served}");
        assert_eq!(ours[4]["span"], serde_json::json!({"name": "bare"}));
        assert_eq!(
            ours[5]["span"],
            serde_json::json!({"name": "bare", "later": true})
        );
        assert_eq!(ours[0]["span"]["uri"], "/a?b=\"c\"");
        assert_eq!(
            ours[0]["fields"]["text"],
            "tab\there \"quoted\" back\\slash \u{1} bell"
        );
        assert_eq!(ours[1]["fields"]["nan"], Value::Null);
        assert_eq!(ours[6]["span"]["nested"], "outer text");
        assert_eq!(ours[6]["span"]["big"].as_str().map(str::len), Some(20_000));
    }
}
