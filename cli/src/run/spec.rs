//! Where a field sits in a TOML spec (a load profile, a fault schedule), so
//! that an error names the file, line and dotted key of what is wrong.

/// A profile error: where it is and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ProfileError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The dotted key at `at`: the enclosing table header plus the line's key.
pub fn field_at(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_owned());
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "(top level)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_named_by_its_line_and_dotted_key() {
        let text = "users = 2\n[[scenarios]]\nname = \"x\"\n";
        let at = text.find("name").unwrap();
        assert_eq!(line_of(text, at), 3);
        assert_eq!(field_at(text, at), "scenarios.name");
        assert_eq!(field_at(text, 0), "users");
        assert_eq!(line_of(text, 10_000), 4);
    }
}
