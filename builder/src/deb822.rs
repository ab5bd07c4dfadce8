//! Debian control data (deb822): the paragraph format of package control
//! files, `dpkg` status files, archive `Packages` indexes and
//! machine-readable copyright files (Debian Policy §5.1).
//!
//! A paragraph is a run of `Field: value` lines ended by a blank line. A
//! line starting with a space or tab continues the previous field; in a
//! continuation line, a lone `.` stands for an empty line. Field names are
//! case-insensitive. Lines starting with `#` are comments. This reader
//! never fails: a line without a colon outside a field is skipped, because
//! the callers only read the fields they know.

/// One paragraph: fields in file order, names as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// Returns the value of field `name` (compared without case), with
    /// continuation lines joined by newlines.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Returns the first line of field `name`, trimmed.
    pub fn first_line(&self, name: &str) -> Option<&str> {
        self.get(name).map(|value| value.lines().next().unwrap_or_default().trim())
    }
}

/// Splits `text` into paragraphs. Each value keeps its first line (trimmed)
/// and its continuation lines (without the leading space, `.` turned into
/// an empty line), joined by `\n`.
pub fn parse(text: &str) -> Vec<Paragraph> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.fields.last_mut() {
                let continued = &line[1..];
                value.push('\n');
                if continued.trim() != "." {
                    value.push_str(continued);
                }
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    paragraphs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_at_blank_lines() {
        let text = "Package: a\nVersion: 1\n\n\nPackage: b\n# comment\nversion: 2\n";
        let paragraphs = parse(text);
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("Package"), Some("a"));
        assert_eq!(paragraphs[1].get("Version"), Some("2"), "field names compare without case");
    }

    #[test]
    fn continuation_lines_join_with_newlines() {
        let text = "License: GPL-2+\n This program is free software.\n .\n See the GPL.\nFiles: *\n";
        let paragraphs = parse(text);
        assert_eq!(paragraphs[0].get("License"), Some("GPL-2+\nThis program is free software.\n\nSee the GPL."));
        assert_eq!(paragraphs[0].first_line("License"), Some("GPL-2+"));
        assert_eq!(paragraphs[0].get("Files"), Some("*"));
    }

    #[test]
    fn stray_lines_are_skipped() {
        let paragraphs = parse(" orphan continuation\nno colon here\nPackage: c\n");
        assert_eq!(paragraphs, vec![Paragraph { fields: vec![("Package".into(), "c".into())] }]);
    }
}
