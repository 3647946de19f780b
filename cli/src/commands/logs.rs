//! `storefront logs NAME [-f] [-n N]`: a component's log file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::commands::Global;
use crate::exit::{self, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Component name as `storefront status` lists it (postgres, rabbitmq, catalog-1, ...).
    pub name: String,
    /// Keep printing as the log grows (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
    /// How many lines from the end to print first.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let path = ctx.log_path(&args.name);
    if !path.exists() {
        let mut names: Vec<String> = std::fs::read_dir(ctx.logs_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        return Err(Exit::error(
            exit::USAGE,
            format!(
                "no log for `{}` in {}; logs there: {}",
                args.name,
                ctx.logs_dir().display(),
                if names.is_empty() {
                    "none (has the fleet run?)".into()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    let mut out = std::io::stdout().lock();
    let tail = crate::fleet::process::tail(&path, args.lines);
    if !tail.is_empty() {
        writeln!(out, "{tail}")?;
    }
    if !args.follow {
        return Ok(exit::OK);
    }
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pos = f.seek(SeekFrom::End(0))?;
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let len = f.metadata()?.len();
        if len < pos {
            pos = 0; // truncated or replaced
        }
        f.seek(SeekFrom::Start(pos))?;
        buf.clear();
        f.read_to_end(&mut buf)?;
        pos += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
    }
}
