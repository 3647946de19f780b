//! The checkout saga as a pure state machine: StockReservation →
//! PaymentSession → Capture → Complete, each failure with a named
//! compensation. [`next`] says, for a state and what happened, the new
//! state, the command to send, the failure to record and when to look
//! again. The store persists a transition and its command in one
//! transaction; tests step it here, with time as a parameter.
//!
//! ```text
//! reserving ──reserved──▶ awaiting_authorization ──authorized──▶ awaiting_capture ──captured──▶ completed
//!   │ out of stock          │ declined        │ timeout                │ capture failed
//!   ▼                       │                 ▼                        ▼
//! rejected                  │            voiding_payment ◀─────────────┘
//!   reserve timed out ──┐   │                 │ voided
//!                       ▼   ▼                 ▼
//!                   releasing_stock ◀─────────┘ ──released──▶ failed
//! ```
//!
//! Capture is the pivot: once it is asked for, the saga only goes forward
//! (a capture that doesn't answer is asked again, never compensated, since
//! money may have moved). Compensations are retried until they succeed.

use std::time::Duration;

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Step StockReservation: pricing and reserving over HTTP at catalog.
    Reserving,
    /// Step PaymentSession: `authorize_payment` sent, waiting for payments.
    AwaitingAuthorization,
    /// Step Capture: `capture_payment` sent, waiting for payments.
    AwaitingCapture,
    /// Compensation: `void_payment` sent, waiting for payments.
    VoidingPayment,
    /// Compensation: releasing the reservation over HTTP at catalog.
    ReleasingStock,
    /// Step Complete: paid, stock taken. Terminal.
    Completed,
    /// Compensated: nothing held. Terminal.
    Failed,
    /// Refused before anything was taken (out of stock). Terminal.
    Rejected,
}

impl State {
    /// Every state, for exhaustive tests.
    pub const ALL: [State; 8] = [
        Self::Reserving,
        Self::AwaitingAuthorization,
        Self::AwaitingCapture,
        Self::VoidingPayment,
        Self::ReleasingStock,
        Self::Completed,
        Self::Failed,
        Self::Rejected,
    ];

    /// The name stored in Postgres and shown by `GET /checkout/{id}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::AwaitingAuthorization => "awaiting_authorization",
            Self::AwaitingCapture => "awaiting_capture",
            Self::VoidingPayment => "voiding_payment",
            Self::ReleasingStock => "releasing_stock",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    /// The inverse of [`State::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// No transition leaves it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Rejected)
    }

    /// States whose step is an HTTP call this service makes (rather than
    /// an answer it waits for).
    pub fn is_http_step(self) -> bool {
        matches!(self, Self::Reserving | Self::ReleasingStock)
    }
}

/// Why a saga did not complete; set once, by the first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An item was short (or unknown): rejected, nothing to undo.
    OutOfStock,
    /// Catalog could not be reached within the reservation deadline.
    ReservationFailed,
    /// The provider declined the authorization.
    PaymentDeclined,
    /// The capture failed.
    CaptureFailed,
    /// No answer to the authorization within its timeout.
    AuthorizationTimeout,
}

impl Failure {
    /// Every failure.
    pub const ALL: [Failure; 5] = [
        Self::OutOfStock,
        Self::ReservationFailed,
        Self::PaymentDeclined,
        Self::CaptureFailed,
        Self::AuthorizationTimeout,
    ];

    /// The inverse of [`Failure::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::ReservationFailed => "reservation_failed",
            Self::PaymentDeclined => "payment_declined",
            Self::CaptureFailed => "capture_failed",
            Self::AuthorizationTimeout => "authorization_timeout",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Catalog reserved the items (201 or, on a retry, 200).
    Reserved,
    /// Catalog refused: out of stock (409) or an unknown product (422).
    ReservationRefused,
    /// Catalog could not be reached before the reservation deadline.
    ReserveTimedOut,
    /// payments: `payment_authorized`.
    PaymentAuthorized,
    /// payments: `payment_declined`.
    PaymentDeclined,
    /// payments: `payment_captured`.
    PaymentCaptured,
    /// payments: `payment_capture_failed`.
    PaymentCaptureFailed,
    /// payments: `payment_voided`.
    PaymentVoided,
    /// The state's deadline passed with no answer (the sweeper says so).
    DeadlinePassed,
    /// Catalog released the reservation (200, or 404: nothing was held).
    StockReleased,
}

impl Input {
    /// Every input, for exhaustive tests.
    pub const ALL: [Input; 10] = [
        Self::Reserved,
        Self::ReservationRefused,
        Self::ReserveTimedOut,
        Self::PaymentAuthorized,
        Self::PaymentDeclined,
        Self::PaymentCaptured,
        Self::PaymentCaptureFailed,
        Self::PaymentVoided,
        Self::DeadlinePassed,
        Self::StockReleased,
    ];

    /// The name recorded as a step's cause.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "stock_reserved",
            Self::ReservationRefused => "reservation_refused",
            Self::ReserveTimedOut => "reservation_timed_out",
            Self::PaymentAuthorized => "payment_authorized",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentCaptured => "payment_captured",
            Self::PaymentCaptureFailed => "payment_capture_failed",
            Self::PaymentVoided => "payment_voided",
            Self::DeadlinePassed => "deadline_passed",
            Self::StockReleased => "stock_released",
        }
    }
}

/// The command a transition sends to payments (through the outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// `authorize_payment`
    AuthorizePayment,
    /// `capture_payment`
    CapturePayment,
    /// `void_payment`
    VoidPayment,
}

/// When the saga should be looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An HTTP step to run now.
    Now,
    /// An answer awaited; give up (or ask again) after this long.
    After(Duration),
    /// Terminal.
    Never,
}

/// The deadlines, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for the authorization before compensating.
    pub authorization: Duration,
    /// How long to wait for a capture or void before asking again.
    pub resend_after: Duration,
}

/// One transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state (may equal the old one: a command sent again).
    pub to: State,
    /// The command to send with it.
    pub send: Option<Send>,
    /// The failure it records, if it is the saga's first.
    pub failure: Option<Failure>,
    /// When to look at the saga again.
    pub wake: Wake,
}

/// The transition for `input` in `state`; `None`: ignore it (a duplicate
/// or late answer, or a deadline that another transition already moved).
pub fn next(state: State, input: Input, t: &Timeouts) -> Option<Transition> {
    use Input as I;
    use State as S;
    let go = |to, send, failure| {
        let wake = match to {
            S::Reserving | S::ReleasingStock => Wake::Now,
            S::AwaitingAuthorization => Wake::After(t.authorization),
            S::AwaitingCapture | S::VoidingPayment => Wake::After(t.resend_after),
            S::Completed | S::Failed | S::Rejected => Wake::Never,
        };
        Some(Transition {
            to,
            send,
            failure,
            wake,
        })
    };
    match (state, input) {
        (S::Reserving, I::Reserved) => {
            go(S::AwaitingAuthorization, Some(Send::AuthorizePayment), None)
        }
        (S::Reserving, I::ReservationRefused) => go(S::Rejected, None, Some(Failure::OutOfStock)),
        // The reservation may have landed without our hearing: release it.
        (S::Reserving, I::ReserveTimedOut) => {
            go(S::ReleasingStock, None, Some(Failure::ReservationFailed))
        }
        (S::AwaitingAuthorization, I::PaymentAuthorized) => {
            go(S::AwaitingCapture, Some(Send::CapturePayment), None)
        }
        (S::AwaitingAuthorization, I::PaymentDeclined) => {
            go(S::ReleasingStock, None, Some(Failure::PaymentDeclined))
        }
        (S::AwaitingAuthorization, I::DeadlinePassed) => go(
            S::VoidingPayment,
            Some(Send::VoidPayment),
            Some(Failure::AuthorizationTimeout),
        ),
        (S::AwaitingCapture, I::PaymentCaptured) => go(S::Completed, None, None),
        (S::AwaitingCapture, I::PaymentCaptureFailed) => go(
            S::VoidingPayment,
            Some(Send::VoidPayment),
            Some(Failure::CaptureFailed),
        ),
        // The pivot: ask again, never compensate.
        (S::AwaitingCapture, I::DeadlinePassed) => {
            go(S::AwaitingCapture, Some(Send::CapturePayment), None)
        }
        // A declined payment holds nothing either.
        (S::VoidingPayment, I::PaymentVoided | I::PaymentDeclined) => {
            go(S::ReleasingStock, None, None)
        }
        (S::VoidingPayment, I::DeadlinePassed) => {
            go(S::VoidingPayment, Some(Send::VoidPayment), None)
        }
        (S::ReleasingStock, I::StockReleased) => go(S::Failed, None, None),
        _ => None,
    }
}

/// The states a saga ending this way passes through, in order, ignoring
/// repeats (a command sent again): what the experiments compare the
/// recorded history with.
pub fn expected_path(outcome: Option<Failure>) -> &'static [State] {
    use State as S;
    match outcome {
        None => &[
            S::Reserving,
            S::AwaitingAuthorization,
            S::AwaitingCapture,
            S::Completed,
        ],
        Some(Failure::OutOfStock) => &[S::Reserving, S::Rejected],
        Some(Failure::ReservationFailed) => &[S::Reserving, S::ReleasingStock, S::Failed],
        Some(Failure::PaymentDeclined) => &[
            S::Reserving,
            S::AwaitingAuthorization,
            S::ReleasingStock,
            S::Failed,
        ],
        Some(Failure::CaptureFailed) => &[
            S::Reserving,
            S::AwaitingAuthorization,
            S::AwaitingCapture,
            S::VoidingPayment,
            S::ReleasingStock,
            S::Failed,
        ],
        Some(Failure::AuthorizationTimeout) => &[
            S::Reserving,
            S::AwaitingAuthorization,
            S::VoidingPayment,
            S::ReleasingStock,
            S::Failed,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        authorization: Duration::from_secs(6),
        resend_after: Duration::from_secs(5),
    };

    /// Feeds inputs from `reserving`; returns the path (repeats collapsed),
    /// the commands sent and the failure recorded first.
    fn run(inputs: &[Input]) -> (Vec<State>, Vec<Send>, Option<Failure>) {
        let mut state = State::Reserving;
        let (mut path, mut sent, mut failure) = (vec![state], Vec::new(), None);
        for &input in inputs {
            if let Some(t) = next(state, input, &T) {
                if t.to != state {
                    path.push(t.to);
                }
                state = t.to;
                sent.extend(t.send);
                failure = failure.or(t.failure);
            }
        }
        (path, sent, failure)
    }

    #[test]
    fn the_happy_path_sends_authorize_then_capture() {
        let (path, sent, failure) = run(&[
            Input::Reserved,
            Input::PaymentAuthorized,
            Input::PaymentCaptured,
        ]);
        assert_eq!(path, expected_path(None));
        assert_eq!(sent, [Send::AuthorizePayment, Send::CapturePayment]);
        assert_eq!(failure, None);
    }

    #[test]
    fn each_failure_runs_its_named_compensation() {
        use Input as I;
        let cases: [(&[Input], Failure, &[Send]); 5] = [
            (&[I::ReservationRefused], Failure::OutOfStock, &[]),
            (
                &[I::ReserveTimedOut, I::StockReleased],
                Failure::ReservationFailed,
                &[],
            ),
            (
                &[I::Reserved, I::PaymentDeclined, I::StockReleased],
                Failure::PaymentDeclined,
                &[Send::AuthorizePayment],
            ),
            (
                &[
                    I::Reserved,
                    I::PaymentAuthorized,
                    I::PaymentCaptureFailed,
                    I::PaymentVoided,
                    I::StockReleased,
                ],
                Failure::CaptureFailed,
                &[
                    Send::AuthorizePayment,
                    Send::CapturePayment,
                    Send::VoidPayment,
                ],
            ),
            (
                &[
                    I::Reserved,
                    I::DeadlinePassed,
                    I::PaymentVoided,
                    I::StockReleased,
                ],
                Failure::AuthorizationTimeout,
                &[Send::AuthorizePayment, Send::VoidPayment],
            ),
        ];
        for (inputs, expected, commands) in cases {
            let (path, sent, failure) = run(inputs);
            assert_eq!(failure, Some(expected), "{inputs:?}");
            assert_eq!(path, expected_path(Some(expected)), "{inputs:?}");
            assert_eq!(sent, commands, "{inputs:?}");
        }
    }

    #[test]
    fn duplicate_and_late_answers_are_ignored() {
        let (path, sent, _) = run(&[
            Input::Reserved,
            Input::Reserved,
            Input::PaymentAuthorized,
            Input::PaymentAuthorized,
            Input::PaymentDeclined,
            Input::PaymentCaptured,
            Input::PaymentCaptured,
            Input::PaymentVoided,
            Input::DeadlinePassed,
        ]);
        assert_eq!(path, expected_path(None));
        assert_eq!(sent, [Send::AuthorizePayment, Send::CapturePayment]);
    }

    #[test]
    fn an_authorization_arriving_after_the_timeout_does_not_resurrect_the_order() {
        let (path, _, failure) = run(&[
            Input::Reserved,
            Input::DeadlinePassed,
            Input::PaymentAuthorized,
            Input::PaymentVoided,
            Input::StockReleased,
        ]);
        assert_eq!(failure, Some(Failure::AuthorizationTimeout));
        assert_eq!(path.last(), Some(&State::Failed));
    }

    #[test]
    fn capture_is_asked_again_on_timeout_never_compensated() {
        let t = next(State::AwaitingCapture, Input::DeadlinePassed, &T).unwrap();
        assert_eq!(t.to, State::AwaitingCapture);
        assert_eq!(t.send, Some(Send::CapturePayment));
        assert_eq!(t.wake, Wake::After(T.resend_after));
    }

    #[test]
    fn terminal_states_take_no_input_and_wake_never() {
        for state in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for input in Input::ALL {
                assert_eq!(next(state, input, &T), None, "{state:?} {input:?}");
            }
        }
        for state in State::ALL {
            for input in Input::ALL {
                if let Some(t) = next(state, input, &T) {
                    assert_eq!(t.wake == Wake::Never, t.to.is_terminal());
                    assert_eq!(t.wake == Wake::Now, t.to.is_http_step());
                }
            }
        }
    }

    #[test]
    fn waiting_for_authorization_times_out_after_the_configured_time() {
        let t = next(State::Reserving, Input::Reserved, &T).unwrap();
        assert_eq!(t.wake, Wake::After(Duration::from_secs(6)));
    }

    #[test]
    fn names_round_trip() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("done"), None);
    }
}
