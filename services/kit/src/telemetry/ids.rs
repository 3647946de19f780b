//! W3C trace ids for spans when nothing exports them.
//!
//! Without an exporter an OpenTelemetry span is built, timed and dropped
//! for each tracing span, only for its two ids to reach the log lines and
//! the outbound `traceparent`. This layer keeps just the ids, in the span's
//! extensions: a span inherits its parent's trace id and sampled flag and
//! gets a span id of its own; a span without a parent starts a trace, and
//! [`continue_from`] puts a span in its caller's trace. With an exporter
//! the OpenTelemetry layer does all of this instead (see `super::build`).

use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A span's place in its trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SpanIds {
    /// The trace's 16-byte id, never 0.
    pub trace: u128,
    /// This span's 8-byte id, never 0.
    pub span: u64,
    /// The trace's sampled flag, as the caller sent it (a new trace is
    /// sampled).
    pub sampled: bool,
}

impl SpanIds {
    fn root() -> Self {
        SpanIds {
            trace: nonzero(rand::random::<u128>),
            span: nonzero(rand::random::<u64>),
            sampled: true,
        }
    }

    /// A new span in the trace of `parent` (a local span or a caller's).
    fn child_of(trace: u128, sampled: bool) -> Self {
        SpanIds {
            trace,
            span: nonzero(rand::random::<u64>),
            sampled,
        }
    }

    /// The `traceparent` a call made in this span carries (one for every
    /// upstream call of the BFF, so written without `format!`'s padding).
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        out.push_str(lower_hex::<32>(self.trace).as_str());
        out.push('-');
        out.push_str(lower_hex::<16>(u128::from(self.span)).as_str());
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }
}

/// The low `N` hex digits of `value`, lowercase, zero-padded: what
/// `{:0N$x}` writes for a value that fits.
pub(super) fn lower_hex<const N: usize>(value: u128) -> Ascii<N> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [b'0'; N];
    for (i, digit) in digits.iter_mut().rev().enumerate() {
        *digit = DIGITS[((value >> (4 * i)) & 0xf) as usize];
    }
    Ascii(digits)
}

/// Text of a fixed length written byte by byte (hex digits from
/// [`lower_hex`], a log line's timestamp), kept on the stack.
pub(super) struct Ascii<const N: usize>(pub [u8; N]);

impl<const N: usize> Ascii<N> {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into one.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn nonzero<T: Default + PartialEq>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let v = draw();
        if v != T::default() {
            return v;
        }
    }
}

/// A caller's `traceparent`, read as W3C Trace Context says: version 00
/// has exactly four fields; a later version may append more; version ff,
/// an all-zero id, upper case or a wrong length make it invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caller {
    trace: u128,
    sampled: bool,
}

impl Caller {
    pub fn parse(traceparent: &str) -> Option<Caller> {
        let mut parts = traceparent.trim().split('-');
        let version = hex(parts.next()?, 2)?;
        let trace = hex(parts.next()?, 32)?;
        let parent = hex(parts.next()?, 16)?;
        let flags = hex(parts.next()?, 2)?;
        let rest_ok = if version == 0 {
            parts.next().is_none()
        } else {
            true
        };
        (version != 0xff && rest_ok && trace != 0 && parent != 0).then_some(Caller {
            trace,
            sampled: flags & 1 == 1,
        })
    }
}

/// `text` as a number, if it is exactly `digits` lowercase hex digits.
fn hex(text: &str, digits: usize) -> Option<u128> {
    let ok = text.len() == digits
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| u128::from_str_radix(text, 16).ok()).flatten()
}

/// The layer: gives every new span its [`SpanIds`].
pub(super) struct Ids;

impl<S> Layer<S> for Ids
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let inherited = span
            .parent()
            .and_then(|parent| parent.extensions().get::<SpanIds>().copied());
        let ids = match inherited {
            Some(parent) => SpanIds::child_of(parent.trace, parent.sampled),
            None => SpanIds::root(),
        };
        span.extensions_mut().insert(ids);
    }
}

/// Runs `f` on the ids this layer gave `span`; None if it gave it none
/// (the OpenTelemetry layer is in use, or `span` is disabled).
fn with_ids<R>(span: &tracing::Span, f: impl FnOnce(&mut SpanIds) -> R) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let mut extensions = data.extensions_mut();
        extensions.get_mut::<SpanIds>().map(f)
    })
    .flatten()
}

/// The ids of `span`, if this layer gave it some.
pub(super) fn of(span: &tracing::Span) -> Option<SpanIds> {
    with_ids(span, |ids| *ids)
}

/// Moves `span` into the caller's trace (it keeps its own span id); false
/// if this layer gave `span` no ids (the OpenTelemetry layer is in use).
/// Spans made under `span` afterwards inherit the caller's trace.
pub(super) fn continue_from(span: &tracing::Span, caller: Caller) -> bool {
    with_ids(span, |ids| {
        ids.trace = caller.trace;
        ids.sampled = caller.sampled;
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_caller_is_read_as_w3c_trace_context_says() {
        let ok = Caller::parse(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap();
        assert_eq!(format!("{:032x}", ok.trace), TRACE);
        assert!(ok.sampled);
        let unsampled = Caller::parse(&format!("00-{TRACE}-00f067aa0ba902b7-00")).unwrap();
        assert!(!unsampled.sampled);
        assert!(
            Caller::parse(&format!("01-{TRACE}-00f067aa0ba902b7-01-later")).is_some(),
            "a later version may add fields"
        );
        for bad in [
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-00f067aa0ba902b-01"),
            format!("00-{TRACE}-00f067aa0ba902b7"),
            "00-not-a-trace-01".to_owned(),
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            String::new(),
        ] {
            assert_eq!(Caller::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_print_as_fixed_width_lowercase_hex() {
        let ids = SpanIds {
            trace: 0xab,
            span: 0x1,
            sampled: false,
        };
        assert_eq!(
            ids.traceparent(),
            "00-000000000000000000000000000000ab-0000000000000001-00"
        );
        let root = SpanIds::root();
        assert!(root.trace != 0 && root.span != 0 && root.sampled);
        for ids in [
            root,
            SpanIds {
                trace: u128::MAX,
                span: u64::MAX,
                sampled: true,
            },
        ] {
            assert_eq!(
                ids.traceparent(),
                format!("00-{:032x}-{:016x}-01", ids.trace, ids.span)
            );
        }
        assert_eq!(lower_hex::<4>(0xabcdef).as_str(), "cdef", "the low digits");
    }
}
