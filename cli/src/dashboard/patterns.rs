//! The README's pattern table, read at build time, so each service card on
//! the page names its patterns and links the files that implement them
//! (the one table stays the single source).

use serde::Serialize;

const README: &str = include_str!("../../../README.md");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pattern {
    pub pattern: String,
    /// Services the row names (`catalog`, `kit`, `CLI`, ...).
    pub services: Vec<String>,
    /// Paths in the file column, as written (a few are globs or directories).
    pub files: Vec<String>,
}

/// Every row of the README's pattern table.
pub fn all() -> Vec<Pattern> {
    parse(README)
}

/// Rows of the first table whose header is `| pattern | service | file |`.
pub fn parse(markdown: &str) -> Vec<Pattern> {
    let mut lines = markdown.lines().skip_while(|l| {
        let c = cells(l);
        c.first().map(String::as_str) != Some("pattern")
            || c.get(2).map(String::as_str) != Some("file")
    });
    lines.next();
    lines
        .skip_while(|l| l.starts_with("| ---"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let c = cells(l);
            let [pattern, services, files] = c.as_slice() else {
                return None;
            };
            Some(Pattern {
                pattern: pattern.replace('`', ""),
                services: services
                    .split([',', '/'])
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                files: files
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// A table row's cells; `\|` is a literal bar.
fn cells(line: &str) -> Vec<String> {
    let Some(inner) = line
        .trim()
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    out.push(cell);
    out.iter().map(|c| c.trim().to_owned()).collect()
}

/// True when `path` is a plain file path the table names (no glob): the
/// only files the page may show.
pub fn listed(patterns: &[Pattern], path: &str) -> bool {
    !path.contains(['*', '{', '}'])
        && !path.split('/').any(|s| s == ".." || s == ".")
        && !path.starts_with('/')
        && patterns.iter().any(|p| p.files.iter().any(|f| f == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "intro\n\n| pattern | service | file |\n| --- | --- | --- |\n\
| Keyset pagination | catalog | `services/catalog/src/store.rs`, `services/catalog/src/routes/products.rs` |\n\
| Signed `t=…` webhooks, `HMAC(id\\|time)` | payments | `services/payments/src/signature.rs` (`x`) |\n\
| Whose order | checkout, claims | `services/checkout/src/a.rs` |\n\nafter | x | y |\n";

    #[test]
    fn rows_give_pattern_services_and_files_and_an_escaped_bar_stays_in_its_cell() {
        let p = parse(MD);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].services, ["catalog"]);
        assert_eq!(
            p[0].files,
            [
                "services/catalog/src/store.rs",
                "services/catalog/src/routes/products.rs"
            ]
        );
        assert_eq!(p[1].pattern, "Signed t=… webhooks, HMAC(id|time)");
        assert_eq!(p[1].files, ["services/payments/src/signature.rs", "x"]);
        assert_eq!(p[2].services, ["checkout", "claims"]);
    }

    #[test]
    fn only_listed_plain_paths_may_be_shown() {
        let p = parse(MD);
        assert!(listed(&p, "services/catalog/src/store.rs"));
        assert!(!listed(&p, "services/catalog/src/other.rs"));
        assert!(!listed(&p, "../etc/passwd"));
        assert!(!listed(&p, "/etc/passwd"));
    }

    #[test]
    fn the_readme_table_names_every_service_of_the_fleet() {
        let all = all();
        for s in [
            "catalog", "claims", "bff", "identity", "payments", "checkout",
        ] {
            assert!(all.iter().any(|p| p.services.iter().any(|x| x == s)), "{s}");
        }
    }
}
