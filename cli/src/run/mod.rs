//! The run model: the bottom layer every experiment, load run, check and
//! fault schedule feeds, and that `report/` renders. Nothing here reaches up
//! a layer: it knows the fleet (to connect to it) and nothing above.
//!
//! - [`verdict`]: an [`Invariant`] judged [`Verdict::Pass`], `Fail` or
//!   `Unknown`, and the [`overall`] verdict of many.
//! - [`report`]: the [`Report`] one experiment run produces.
//! - [`record`]: exact [`Outcomes`] and HDR [`Latencies`] per label.
//! - [`timeline`]: the run second by second ([`Seconds`] → [`Timeline`]),
//!   with fault [`Mark`]s.
//! - [`hdr`]: the one HDR histogram factory and its [`Summary`].
//! - [`lab`]: [`Lab`], the handle on a running fleet (and its lab lock).
//! - [`progress`]: progress [`Event`]s and the [`Progress`] handle that sends
//!   them to a terminal, to JSON lines, or nowhere.
//! - [`accounts`]: the accounts every fleet seeds.
//! - [`dur`]: the one duration syntax of the command line and the profiles.
//! - [`spec`]: where a profile's field sits, for errors that name its line.

pub mod accounts;
pub mod dur;
pub mod hdr;
pub mod lab;
pub mod progress;
pub mod record;
pub mod report;
pub mod spec;
pub mod timeline;
pub mod verdict;

pub use hdr::{Summary, summarize};
pub use lab::Lab;
pub use progress::Progress;
pub use record::{Latencies, Outcomes};
pub use report::Report;
pub use timeline::{Mark, Seconds, Timeline};
pub use verdict::{Invariant, Verdict, overall};
