//! Tables, ages, colours (only on a terminal, never with NO_COLOR) and progress.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, ContentArrangement, Table};
use std::io::IsTerminal;

/// A borderless, kubectl-style table without colours.
pub fn table(headers: &[&str]) -> Table {
    styled_table(headers, false)
}

/// A borderless, kubectl-style table; `color` lets cells made by [`cell`] keep their colour.
/// comfy-table measures columns before styling, so coloured cells stay aligned.
pub fn styled_table(headers: &[&str], color: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t.set_header(headers.iter().map(Cell::new));
    t
}

/// A table cell coloured by meaning (see [`paint_if`]) when `color`.
pub fn cell(color: bool, s: &str) -> Cell {
    match meaning(s).filter(|_| color) {
        Some(Meaning::Good) => Cell::new(s).fg(comfy_table::Color::Green),
        Some(Meaning::Warn) => Cell::new(s).fg(comfy_table::Color::Yellow),
        Some(Meaning::Bad) => Cell::new(s).fg(comfy_table::Color::Red),
        None => Cell::new(s),
    }
}

/// A table as text, without the leading padding and trailing blanks comfy-table adds.
pub fn text(t: &Table) -> String {
    let mut out = String::new();
    for line in t.to_string().lines() {
        out.push_str(line.strip_prefix(' ').unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

/// Prints a table.
pub fn print(t: &Table) {
    print!("{}", text(t));
}

/// Whether to colour stdout.
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Colours `s` green / yellow / red by meaning when colour is on.
pub fn paint(s: &str) -> String {
    paint_if(color(), s)
}

enum Meaning {
    Good,
    Warn,
    Bad,
}

fn meaning(s: &str) -> Option<Meaning> {
    match s {
        "created" | "configured" | "SYNCED" | "resolved" | "closed" | "healthy" | "delivered" => {
            Some(Meaning::Good)
        }
        "unchanged" | "STALE" | "pending" | "half_open" => Some(Meaning::Warn),
        "NACKED" | "DISCONNECTED" | "firing" | "open" | "unhealthy" | "failed" | "deleted"
        | "pruned" => Some(Meaning::Bad),
        _ => None,
    }
}

/// Colours `s` green / yellow / red by meaning when `color` (for text outside tables).
pub fn paint_if(color: bool, s: &str) -> String {
    let code = match meaning(s).filter(|_| color) {
        Some(Meaning::Good) => "32",
        Some(Meaning::Warn) => "33",
        Some(Meaning::Bad) => "31",
        None => return s.to_owned(),
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// `5m`, `3h`, `2d` since `ms` (epoch ms); `-` for 0.
pub fn age(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = ((now - ms) / 1000).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Epoch ms of a protobuf timestamp.
pub fn ts_ms(t: Option<&prost_types::Timestamp>) -> i64 {
    gw_proto::convert::ts_from_pb(t)
}

/// RFC 3339 time of a protobuf timestamp, `-` when unset.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    time_ms(ts_ms(t))
}

/// RFC 3339 time of epoch ms, `-` when not positive.
pub fn time_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
    )
    .to_string()
}

/// Progress of a long operation on stderr: a live line on a terminal, plain lines otherwise.
pub struct Progress {
    total: usize,
    tty: bool,
    what: &'static str,
}

impl Progress {
    /// Starts reporting progress over `total` items.
    pub fn new(what: &'static str, total: usize) -> Progress {
        let p = Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            what,
        };
        if p.tty {
            // Show the bar before the first batch returns.
            p.update(0);
        }
        p
    }

    /// `done` items are finished.
    pub fn update(&self, done: usize) {
        if self.tty {
            let width = 30;
            let filled = (done * width)
                .checked_div(self.total)
                .unwrap_or(width)
                .min(width);
            eprint!(
                "\r{} [{}{}] {done}/{}",
                self.what,
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.total
            );
            if done >= self.total {
                eprintln!();
            }
        } else {
            eprintln!("{} {done}/{}", self.what, self.total);
        }
    }
}
