//! Rendering only: tables, JSON, JUnit and self-contained HTML pages.
//! Commands build plain data, these print it.

pub mod experiment;
pub mod finish;
pub mod fleet;
pub mod html;
pub mod junit;
pub mod load;

use std::io::IsTerminal;

pub use finish::{CommonArgs, finish};

/// A comfy-table with the house style: UTF-8 borders on a terminal, ASCII
/// otherwise (logs, CI), no colour when NO_COLOR is set or stdout is piped.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    if std::io::stdout().is_terminal() {
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    } else {
        t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    }
    if std::env::var_os("NO_COLOR").is_some() || !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t.set_header(header.iter().copied());
    t
}

/// Prints `value` as one pretty JSON document on stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn secs(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |m| format!("{:.2}s", m as f64 / 1000.0))
}
