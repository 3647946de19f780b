//! The sandbox test cards and what each selects, and the Luhn check every
//! card number passes first.

/// Sandbox test card: approved, captured.
pub const CARD_APPROVE: &str = "4242424242424242";
/// Sandbox test card: declined at authorization.
pub const CARD_DECLINE: &str = "4000000000000002";
/// Sandbox test card: authorized, then the capture fails.
pub const CARD_FAIL_CAPTURE: &str = "4000000000000341";
/// Sandbox test card: the provider never answers.
pub const CARD_NEVER_CONFIRM: &str = "4000000000009995";

/// What the provider does with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Authorize and capture.
    Approve,
    /// Refuse the authorization.
    Decline,
    /// Authorize, then fail the capture.
    FailCapture,
    /// Never send anything.
    NeverConfirm,
}

impl Behaviour {
    /// The behaviour a card number selects: the test cards above; any other
    /// number passing the Luhn check is approved, anything else declined.
    pub fn of_card(card: &str) -> Self {
        match card {
            CARD_DECLINE => Self::Decline,
            CARD_FAIL_CAPTURE => Self::FailCapture,
            CARD_NEVER_CONFIRM => Self::NeverConfirm,
            c if luhn_valid(c) => Self::Approve,
            _ => Self::Decline,
        }
    }

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::FailCapture => "fail_capture",
            Self::NeverConfirm => "never_confirm",
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        match s {
            "decline" => Self::Decline,
            "fail_capture" => Self::FailCapture,
            "never_confirm" => Self::NeverConfirm,
            _ => Self::Approve,
        }
    }
}

/// The Luhn checksum every card number carries: 12–19 digits.
pub fn luhn_valid(card: &str) -> bool {
    let digits: Vec<u32> = card.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != card.len() || !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (0, _) => d,
            (_, doubled) if doubled > 9 => doubled - 9,
            (_, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10)
}
