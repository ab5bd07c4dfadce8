//! Shared machinery for the board and manifest files: settings tables, the
//! error type and a reader that checks TOML against a settings table.
//!
//! Each file format declares its keys once, as a list of [`Section`]s of
//! [`Setting`]s (key, type, default, help). That table drives parsing,
//! defaults, the unknown-key error with its suggestion, and the reference
//! pages `docs/board.md` and `docs/manifest.md` through [`render_reference`].
//! A test compares the pages with the rendered text.
//!
//! Files are parsed with `toml::de::DeTable`, which keeps the byte span of
//! every key and value, so each error names `file:line:col`.

mod error;
mod reader;

pub use error::{ConfigError, ErrorKind, Location, EXIT_CONFIG};
pub(crate) use reader::{
    first_duplicate, integer_in, integer_text, Document, Item, Located, Table,
};

/// One key of a config table.
#[derive(Debug)]
pub struct Setting {
    /// The key as written in the file.
    pub key: &'static str,
    /// The accepted value.
    pub kind: SettingKind,
    /// The value used when the key is absent.
    pub default: DefaultValue,
    /// One or two sentences for the reference page.
    pub help: &'static str,
}

/// The value a setting accepts. It decides the TOML type check, the "expected"
/// part of error messages and the type column of the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingKind {
    /// Any string, checked further by the loader.
    String,
    /// `true` or `false`.
    Boolean,
    /// A non-negative integer.
    Integer,
    /// A byte size string such as `"512MiB"`, or an integer number of bytes.
    Size,
    /// A release number `"X.Y.Z"`.
    Release,
    /// One string out of a fixed list.
    Choice(&'static [&'static str]),
    /// A path, relative to the folder of the file that contains it.
    Path,
    /// An array of paths.
    PathList,
    /// An array of strings.
    StringList,
    /// An array of TCP or UDP port numbers.
    PortList,
    /// A file mode as an octal string such as `"0755"`, or a TOML octal integer.
    Mode,
    /// A table, described by the section of the same name.
    Table,
    /// An array of tables, described by the section of the same name.
    TableArray,
}

impl SettingKind {
    /// Returns the type as shown in the reference table.
    pub fn type_name(self) -> String {
        match self {
            SettingKind::String => "string".to_owned(),
            SettingKind::Boolean => "boolean".to_owned(),
            SettingKind::Integer => "integer".to_owned(),
            SettingKind::Size => "size".to_owned(),
            SettingKind::Release => "release (\"X.Y.Z\")".to_owned(),
            SettingKind::Choice(choices) => error::quoted_list(choices, "or"),
            SettingKind::Path => "path".to_owned(),
            SettingKind::PathList => "array of paths".to_owned(),
            SettingKind::StringList => "array of strings".to_owned(),
            SettingKind::PortList => "array of ports".to_owned(),
            SettingKind::Mode => "octal mode".to_owned(),
            SettingKind::Table => "table".to_owned(),
            SettingKind::TableArray => "array of tables".to_owned(),
        }
    }

    /// Returns the expected value as used in error messages.
    pub fn expected(self) -> String {
        match self {
            SettingKind::String => "a string".to_owned(),
            SettingKind::Boolean => "true or false".to_owned(),
            SettingKind::Integer => "an integer".to_owned(),
            SettingKind::Size => {
                "a size string such as \"512MiB\", or an integer number of bytes".to_owned()
            }
            SettingKind::Release => "a release string such as \"1.0.0\"".to_owned(),
            SettingKind::Choice(choices) => {
                format!("the string {}", error::quoted_list(choices, "or"))
            }
            SettingKind::Path => "a path string".to_owned(),
            SettingKind::PathList => "an array of path strings".to_owned(),
            SettingKind::StringList => "an array of strings".to_owned(),
            SettingKind::PortList => "an array of port numbers".to_owned(),
            SettingKind::Mode => "an octal mode string such as \"0755\"".to_owned(),
            SettingKind::Table => "a table".to_owned(),
            SettingKind::TableArray => "an array of tables".to_owned(),
        }
    }
}

/// What a setting is when its key is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// The key must be present.
    Required,
    /// The default value as a TOML literal. The loader parses it with the
    /// same code as a value from the file, and the reference shows it as is.
    Toml(&'static str),
    /// No value. The text says what that means for the reference, such as
    /// "no state partition". Tables and arrays of tables with this default
    /// behave as if written empty.
    Absent(&'static str),
}

/// A table of a config file and the keys it accepts.
#[derive(Debug)]
pub struct Section {
    /// The table name, such as `disk`, or `""` for the top level.
    pub name: &'static str,
    /// Whether the table is an array of tables, written `[[name]]`.
    pub array: bool,
    /// An introduction for the reference page.
    pub help: &'static str,
    /// The keys, in the order of the reference.
    pub settings: &'static [Setting],
}

impl Section {
    /// Returns the table as named in messages: `[disk]`, `[[files]]` or
    /// `the top level`.
    pub fn title(&self) -> String {
        match (self.name, self.array) {
            ("", _) => "the top level".to_owned(),
            (name, false) => format!("[{name}]"),
            (name, true) => format!("[[{name}]]"),
        }
    }

    /// Returns the setting for `key`, if the table defines it.
    pub fn setting(&self, key: &str) -> Option<&'static Setting> {
        self.settings.iter().find(|setting| setting.key == key)
    }
}

/// Renders the reference tables of a file format as Markdown, one heading
/// and one table per section. The docs pages include this text verbatim.
pub fn render_reference(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        let heading = match section.name {
            "" => "Top level".to_owned(),
            _ => format!("`{}`", section.title()),
        };
        out.push_str(&format!("### {heading}\n\n{}\n\n", section.help));
        out.push_str("| Key | Type | Default | Meaning |\n| --- | --- | --- | --- |\n");
        for setting in section.settings {
            let default = match setting.default {
                DefaultValue::Required => "required".to_owned(),
                DefaultValue::Toml(literal) => format!("`{literal}`"),
                DefaultValue::Absent(meaning) => meaning.to_owned(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                setting.key,
                escape_cell(&setting.kind.type_name()),
                escape_cell(&default),
                escape_cell(setting.help),
            ));
        }
        out.push('\n');
    }
    out
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Returns whether `name` is usable as a board or manifest name: 1 to 64
/// ASCII letters, digits, '.', '_' or '-', starting with a letter or digit.
/// Names become folder names under `out/`, so they cannot hold '/' or start
/// with '.'.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    starts_well && allowed && name.len() <= 64
}

/// The expected form of a name, for error messages.
pub(crate) const NAME_FORM: &str =
    "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_folder_safe_ascii() {
        for name in ["qemu-x86_64", "a", "fw.v2", "X1"] {
            assert!(is_valid_name(name), "{name}");
        }
        for name in ["", ".hidden", "-x", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn reference_escapes_pipes() {
        assert_eq!(escape_cell("a|b"), "a\\|b");
    }
}
