//! A payment session's state machine, as a pure function: given the status
//! and what happened (a command from checkout or a provider's webhook), the
//! new status, the event to tell checkout and the call to make to the
//! provider. The store applies it in one transaction; tests step it here.
//!
//! ```text
//! pending ──authorized──▶ authorized ──Capture──▶ capture_requested ──captured──▶ captured
//!    │ declined               │ Void                     │ capture failed
//!    ▼                        ▼                          ▼
//! declined              void_requested ◀────Void──── capture_failed
//!    pending ──Void──▶ voided ◀──voided── void_requested
//! ```
//!
//! Webhooks arrive at least once and out of order: an input that makes no
//! sense in the current status changes nothing. Asking again for something
//! already settled re-announces the outcome, so a checkout that lost track
//! (a crash, a timeout) hears it again.

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Authorization asked of the provider; no answer yet.
    Pending,
    /// The amount is held.
    Authorized,
    /// The provider refused; nothing held.
    Declined,
    /// Capture asked of the provider.
    CaptureRequested,
    /// The money moved. Terminal.
    Captured,
    /// The capture failed; the authorization still holds.
    CaptureFailed,
    /// Release asked of the provider.
    VoidRequested,
    /// Nothing held.
    Voided,
}

impl Status {
    /// Every status, for exhaustive tests.
    pub const ALL: [Status; 8] = [
        Self::Pending,
        Self::Authorized,
        Self::Declined,
        Self::CaptureRequested,
        Self::Captured,
        Self::CaptureFailed,
        Self::VoidRequested,
        Self::Voided,
    ];

    /// The name stored in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::CaptureRequested => "capture_requested",
            Self::Captured => "captured",
            Self::CaptureFailed => "capture_failed",
            Self::VoidRequested => "void_requested",
            Self::Voided => "voided",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// What happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Checkout: capture it.
    Capture,
    /// Checkout: release it.
    Void,
    /// Provider: the authorization succeeded.
    Authorized,
    /// Provider: the authorization was refused.
    Declined,
    /// Provider: the capture succeeded.
    Captured,
    /// Provider: the capture failed.
    CaptureFailed,
    /// Provider: the authorization was released.
    Voided,
}

impl Input {
    /// Every input, for exhaustive tests.
    pub const ALL: [Input; 7] = [
        Self::Capture,
        Self::Void,
        Self::Authorized,
        Self::Declined,
        Self::Captured,
        Self::CaptureFailed,
        Self::Voided,
    ];

    /// A short name for the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "capture_command",
            Self::Void => "void_command",
            Self::Authorized => "provider_authorized",
            Self::Declined => "provider_declined",
            Self::Captured => "provider_captured",
            Self::CaptureFailed => "provider_capture_failed",
            Self::Voided => "provider_voided",
        }
    }
}

/// What checkout is told (the store adds the ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// `payment_authorized`
    Authorized,
    /// `payment_declined`
    Declined,
    /// `payment_captured`
    Captured,
    /// `payment_capture_failed`
    CaptureFailed,
    /// `payment_voided`
    Voided,
}

/// What to ask of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Capture the authorization.
    Capture,
    /// Release the authorization (or cancel the pending one).
    Void,
}

/// The consequence of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The new status (may equal the old one).
    pub to: Status,
    /// The event for checkout, if any.
    pub announce: Option<Announce>,
    /// The provider call, if any.
    pub call: Option<Call>,
}

const fn go(to: Status, announce: Option<Announce>, call: Option<Call>) -> Option<Step> {
    Some(Step { to, announce, call })
}

/// The transition for `input` in `from`; `None` means ignore it.
pub fn step(from: Status, input: Input) -> Option<Step> {
    use Announce as A;
    use Input as I;
    use Status as S;
    match (from, input) {
        (S::Pending, I::Authorized) => go(S::Authorized, Some(A::Authorized), None),
        (S::Pending, I::Declined) => go(S::Declined, Some(A::Declined), None),
        // Nothing is held yet: void at once, and cancel at the provider so
        // a late authorization can't hold money for a dead order.
        (S::Pending, I::Void) => go(S::Voided, Some(A::Voided), Some(Call::Void)),
        (S::Authorized, I::Capture) => go(S::CaptureRequested, None, Some(Call::Capture)),
        (S::Authorized | S::CaptureFailed, I::Void) => go(S::VoidRequested, None, Some(Call::Void)),
        (S::CaptureRequested, I::Captured) => go(S::Captured, Some(A::Captured), None),
        (S::CaptureRequested, I::CaptureFailed) => {
            go(S::CaptureFailed, Some(A::CaptureFailed), None)
        }
        (S::VoidRequested, I::Voided) => go(S::Voided, Some(A::Voided), None),
        // The provider authorized after we had cancelled: release it.
        (S::Voided, I::Authorized) => go(S::VoidRequested, None, Some(Call::Void)),
        // Asked again: ask the provider again (it answers idempotently) ...
        (S::CaptureRequested, I::Capture) => go(S::CaptureRequested, None, Some(Call::Capture)),
        (S::VoidRequested, I::Void) => go(S::VoidRequested, None, Some(Call::Void)),
        // ... or say again what is already settled.
        (S::Authorized, I::Authorized) => go(S::Authorized, Some(A::Authorized), None),
        (S::Captured, I::Capture) => go(S::Captured, Some(A::Captured), None),
        (S::CaptureFailed, I::Capture) => go(S::CaptureFailed, Some(A::CaptureFailed), None),
        (S::Voided | S::Declined, I::Void) => go(from, Some(A::Voided), None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inputs: &[Input]) -> (Status, Vec<Announce>, Vec<Call>) {
        let mut status = Status::Pending;
        let (mut announced, mut calls) = (Vec::new(), Vec::new());
        for &input in inputs {
            if let Some(s) = step(status, input) {
                status = s.to;
                announced.extend(s.announce);
                calls.extend(s.call);
            }
        }
        (status, announced, calls)
    }

    #[test]
    fn happy_path_authorizes_then_captures_once() {
        let (status, announced, calls) = run(&[Input::Authorized, Input::Capture, Input::Captured]);
        assert_eq!(status, Status::Captured);
        assert_eq!(announced, [Announce::Authorized, Announce::Captured]);
        assert_eq!(calls, [Call::Capture]);
    }

    #[test]
    fn duplicate_and_late_webhooks_change_nothing_once_settled() {
        let (status, announced, _) = run(&[
            Input::Authorized,
            Input::Capture,
            Input::Captured,
            Input::Captured,
            Input::Authorized,
            Input::CaptureFailed,
            Input::Voided,
        ]);
        assert_eq!(status, Status::Captured);
        assert_eq!(announced, [Announce::Authorized, Announce::Captured]);
    }

    #[test]
    fn a_captured_payment_is_never_voided() {
        assert_eq!(step(Status::Captured, Input::Void), None);
        assert_eq!(step(Status::Captured, Input::Voided), None);
    }

    #[test]
    fn capture_failure_is_voided_through_the_provider() {
        let (status, announced, calls) = run(&[
            Input::Authorized,
            Input::Capture,
            Input::CaptureFailed,
            Input::Void,
            Input::Voided,
        ]);
        assert_eq!(status, Status::Voided);
        assert_eq!(
            announced,
            [
                Announce::Authorized,
                Announce::CaptureFailed,
                Announce::Voided
            ]
        );
        assert_eq!(calls, [Call::Capture, Call::Void]);
    }

    #[test]
    fn void_before_authorization_cancels_and_a_late_authorization_is_released() {
        let (status, announced, calls) = run(&[Input::Void, Input::Authorized, Input::Voided]);
        assert_eq!(status, Status::Voided);
        assert_eq!(announced, [Announce::Voided, Announce::Voided]);
        assert_eq!(calls, [Call::Void, Call::Void]);
    }

    #[test]
    fn only_one_transition_ever_enters_captured() {
        for from in Status::ALL {
            for input in Input::ALL {
                if let Some(s) = step(from, input)
                    && s.to == Status::Captured
                    && from != Status::Captured
                {
                    assert_eq!((from, input), (Status::CaptureRequested, Input::Captured));
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("paid"), None);
    }
}
