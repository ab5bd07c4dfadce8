//! Typed access to a parsed TOML file, checked against a settings table.
//!
//! [`Document`] contains the file text and turns byte spans into line and column.
//! [`Table`] wraps one TOML table and its [`Section`]: opening it rejects
//! unknown keys, and `get` returns an [`Item`] from the file or from the
//! setting's default. `Item` converts the value into a Rust type and reports
//! type errors with the value's position.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use toml::de::{DeInteger, DeTable, DeValue};

use super::error::{ConfigError, ErrorKind, Location};
use super::{DefaultValue, Section, Setting, SettingKind};
use crate::size::Bytes;

/// Byte range of a key or value in the file, or `None` when the value has no
/// place in the file (a default of an absent table, or the whole file).
pub(crate) type Span = Option<Range<usize>>;

/// A config file: its path, the folder that relative paths start from, and
/// its text.
#[derive(Debug)]
pub(crate) struct Document {
    path: PathBuf,
    dir: PathBuf,
    text: String,
}

impl Document {
    /// Reads a config file as UTF-8 text.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let bytes = fs::read(path).map_err(|error| ConfigError {
            location: Location {
                file: path.to_path_buf(),
                position: None,
            },
            kind: Box::new(ErrorKind::Read { error }),
        })?;

        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let valid_len = err.utf8_error().valid_up_to();
                let valid = err.as_bytes().get(..valid_len).unwrap_or_default();
                let prefix = String::from_utf8_lossy(valid);
                return Err(ConfigError {
                    location: Location {
                        file: path.to_path_buf(),
                        position: Some(position_in(&prefix, prefix.len())),
                    },
                    kind: Box::new(ErrorKind::NotUtf8),
                });
            }
        };

        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Document {
            path: path.to_path_buf(),
            dir,
            text,
        })
    }

    /// Parses the text as a TOML document.
    pub(crate) fn parse(&self) -> Result<DeTable<'_>, ConfigError> {
        match DeTable::parse(&self.text) {
            Ok(table) => Ok(table.into_inner()),
            Err(err) => {
                let message = err.message().trim_end().to_owned();
                Err(self.error(err.span(), ErrorKind::Syntax { message }))
            }
        }
    }

    /// Resolves a path written in the file against the file's folder. An
    /// absolute path stays as it is.
    pub(crate) fn resolve(&self, written: &str) -> PathBuf {
        self.dir.join(written)
    }

    /// Builds an error located at `span`.
    pub(crate) fn error(&self, span: Span, kind: ErrorKind) -> ConfigError {
        let position = span.map(|span| position_in(&self.text, span.start));
        ConfigError {
            location: Location {
                file: self.path.clone(),
                position,
            },
            kind: Box::new(kind),
        }
    }

    /// Builds an internal error, for settings tables that disagree with the
    /// code that reads them.
    pub(crate) fn internal(&self, message: String) -> ConfigError {
        self.error(None, ErrorKind::Internal { message })
    }

    /// Returns the 1-based line and column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        position_in(&self.text, offset)
    }

    /// Builds the error for a value listed twice. `show` formats the value.
    pub(crate) fn duplicate<T>(
        &self,
        item: &'static str,
        first: &Located<T>,
        again: &Located<T>,
        show: impl Fn(&T) -> String,
    ) -> ConfigError {
        let Some(first_span) = &first.span else {
            return self.internal(format!(
                "the default of `{}` lists {} twice",
                first.key,
                show(&first.value)
            ));
        };
        self.error(
            again.span.clone(),
            ErrorKind::Duplicate {
                key: again.key.clone(),
                item,
                value: show(&again.value),
                first: self.position(first_span.start),
            },
        )
    }

    /// Checks that `path` is a readable regular file, following symbolic links.
    pub(crate) fn check_file(
        &self,
        path: &Located<PathBuf>,
        role: &'static str,
    ) -> Result<(), ConfigError> {
        let metadata = self.metadata(path, role)?;
        if !metadata.is_file() {
            return Err(self.wrong_file_type(path, role, "a regular file"));
        }

        fs::File::open(&path.value).map_err(|error| self.unreadable(path, role, error))?;
        Ok(())
    }

    /// Checks that `path` is a directory whose entries can be listed,
    /// following symbolic links.
    ///
    /// The check opens the directory and reads its first entry, as the build
    /// does. So as root, a directory with mode 000 passes.
    pub(crate) fn check_dir(
        &self,
        path: &Located<PathBuf>,
        role: &'static str,
    ) -> Result<(), ConfigError> {
        let metadata = self.metadata(path, role)?;
        if !metadata.is_dir() {
            return Err(self.wrong_file_type(path, role, "a directory"));
        }

        let mut entries =
            fs::read_dir(&path.value).map_err(|error| self.unreadable(path, role, error))?;
        if let Some(Err(error)) = entries.next() {
            return Err(self.unreadable(path, role, error));
        }
        Ok(())
    }

    fn metadata(
        &self,
        path: &Located<PathBuf>,
        role: &'static str,
    ) -> Result<fs::Metadata, ConfigError> {
        fs::metadata(&path.value).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => self.error(
                path.span.clone(),
                ErrorKind::FileNotFound {
                    key: path.key.clone(),
                    role,
                    path: path.value.clone(),
                },
            ),
            _ => self.unreadable(path, role, error),
        })
    }

    fn unreadable(
        &self,
        path: &Located<PathBuf>,
        role: &'static str,
        error: io::Error,
    ) -> ConfigError {
        self.error(
            path.span.clone(),
            ErrorKind::Unreadable {
                key: path.key.clone(),
                role,
                path: path.value.clone(),
                error,
            },
        )
    }

    fn wrong_file_type(
        &self,
        path: &Located<PathBuf>,
        role: &'static str,
        expected: &'static str,
    ) -> ConfigError {
        self.error(
            path.span.clone(),
            ErrorKind::WrongFileType {
                key: path.key.clone(),
                role,
                path: path.value.clone(),
                expected,
            },
        )
    }
}

/// Returns the 1-based line and column, in characters, of a byte offset.
/// A byte order mark at the start of the file does not count as a column.
fn position_in(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();

    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let mut line_text = before.get(line_start..).unwrap_or_default();
    if line == 1 {
        line_text = line_text.trim_start_matches('\u{feff}');
    }
    (line, line_text.chars().count() + 1)
}

/// A converted value with the place it came from, for later checks.
#[derive(Clone, Debug)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    /// Span of the value, or of its table when the value is a default.
    pub(crate) span: Span,
    /// The dotted key, such as `kernel.config`.
    pub(crate) key: String,
}

/// One table of a config file, checked against its section of the settings
/// table.
pub(crate) struct Table<'a> {
    doc: &'a Document,
    sections: &'static [Section],
    section: &'static Section,
    /// `None` when the file does not contain the table.
    entries: Option<&'a DeTable<'a>>,
    /// Span of the table header, `None` for the top level or an absent table.
    span: Span,
    /// Prefix that turns a key into its dotted key, such as `disk.`.
    prefix: String,
}

impl<'a> Table<'a> {
    /// Opens the top level of a file. `sections[0]` must describe it.
    pub(crate) fn root(
        doc: &'a Document,
        sections: &'static [Section],
        entries: &'a DeTable<'a>,
    ) -> Result<Self, ConfigError> {
        let section = sections
            .first()
            .filter(|section| section.name.is_empty())
            .ok_or_else(|| {
                doc.internal("the settings table does not start with the top level".to_owned())
            })?;

        let table = Table {
            doc,
            sections,
            section,
            entries: Some(entries),
            span: None,
            prefix: String::new(),
        };
        table.check_keys()?;
        Ok(table)
    }

    /// Returns the table as named in messages, such as `[disk]`.
    pub(crate) fn title(&self) -> String {
        self.section.title()
    }

    /// Returns the keys present in the file with their spans, in file order.
    pub(crate) fn present_keys(&self) -> Vec<(&'a str, Range<usize>)> {
        let Some(entries) = self.entries else {
            return Vec::new();
        };
        let mut keys: Vec<(&'a str, Range<usize>)> = entries
            .iter()
            .map(|(key, _)| (key.get_ref().as_ref(), key.span()))
            .collect();
        keys.sort_by_key(|(_, span)| span.start);
        keys
    }

    /// Returns the dotted form of a key of this table.
    pub(crate) fn dotted(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn check_keys(&self) -> Result<(), ConfigError> {
        for (key, span) in self.present_keys() {
            if self.section.setting(key).is_none() {
                return Err(self.doc.error(Some(span), self.unknown_key(key)));
            }
        }
        Ok(())
    }

    fn unknown_key(&self, key: &str) -> ErrorKind {
        let valid: Vec<&'static str> = self
            .section
            .settings
            .iter()
            .map(|setting| setting.key)
            .collect();
        let other_table = self
            .sections
            .iter()
            .filter(|section| !std::ptr::eq(*section, self.section))
            .find(|section| section.setting(key).is_some())
            .map(Section::title);
        // A key that exists verbatim in another table is more likely misplaced
        // than misspelled.
        let suggestion = match other_table {
            Some(_) => None,
            None => closest_key(key, &valid),
        };

        ErrorKind::UnknownKey {
            key: key.to_owned(),
            table: self.section.title(),
            suggestion,
            other_table,
            valid,
        }
    }

    fn setting(&self, key: &str) -> Result<&'static Setting, ConfigError> {
        self.section.setting(key).ok_or_else(|| {
            self.doc.internal(format!(
                "`{}` is not in the settings table of {}",
                self.dotted(key),
                self.title()
            ))
        })
    }

    fn subsection(&self, key: &str) -> Result<&'static Section, ConfigError> {
        self.sections
            .iter()
            .find(|section| section.name == key)
            .ok_or_else(|| {
                self.doc.internal(format!(
                    "the settings table has no section for `{}`",
                    self.dotted(key)
                ))
            })
    }

    fn raw(&self, key: &str) -> Option<(&'a DeValue<'a>, Range<usize>)> {
        let entry = self.entries?.get(key)?;
        Some((entry.get_ref(), entry.span()))
    }

    /// Builds the error for a key that is required in this context, such as
    /// `source.path` with `kind = "tarball"`. It points at the table header.
    pub(crate) fn missing_key(&self, key: &str) -> ConfigError {
        match self.setting(key) {
            Ok(setting) => self.missing(key, setting),
            Err(error) => error,
        }
    }

    fn missing(&self, key: &str, setting: &Setting) -> ConfigError {
        let fix = match (setting.kind, self.section.name) {
            (SettingKind::Table, _) => format!("add a [{}] table", self.dotted(key)),
            (SettingKind::TableArray, _) => format!("add a [[{}]] table", self.dotted(key)),
            (kind, "") => format!(
                "add `{key} = …` above the first [table] header, with {}",
                kind.expected()
            ),
            (kind, _) if self.section.array => {
                format!(
                    "add `{key} = …` to this {} table, with {}",
                    self.title(),
                    kind.expected()
                )
            }
            (kind, _) => format!(
                "add `{key} = …` to {}, with {}",
                self.title(),
                kind.expected()
            ),
        };
        self.doc.error(
            self.span.clone(),
            ErrorKind::MissingKey {
                key: self.dotted(key),
                fix,
            },
        )
    }

    /// Opens the sub-table `key`. An absent optional table reads as empty,
    /// so all its keys take their defaults.
    pub(crate) fn table(&self, key: &str) -> Result<Table<'a>, ConfigError> {
        let setting = self.setting(key)?;
        let section = self.subsection(key)?;
        if setting.kind != SettingKind::Table || section.array {
            return Err(self
                .doc
                .internal(format!("`{}` is not declared as a table", self.dotted(key))));
        }

        let (entries, span) = match self.raw(key) {
            Some((DeValue::Table(entries), span)) => (Some(entries), Some(span)),
            Some((other, span)) => {
                return Err(wrong_type(
                    self.doc,
                    self.dotted(key),
                    setting.kind,
                    other,
                    Some(span),
                ))
            }
            None if setting.default == DefaultValue::Required => {
                return Err(self.missing(key, setting))
            }
            None => (None, None),
        };

        let table = Table {
            doc: self.doc,
            sections: self.sections,
            section,
            entries,
            span,
            prefix: self.dotted(key) + ".",
        };
        table.check_keys()?;
        Ok(table)
    }

    /// Opens each table of the array of tables `key`, in file order.
    pub(crate) fn tables(&self, key: &str) -> Result<Vec<Table<'a>>, ConfigError> {
        let setting = self.setting(key)?;
        let section = self.subsection(key)?;
        if setting.kind != SettingKind::TableArray || !section.array {
            return Err(self.doc.internal(format!(
                "`{}` is not declared as an array of tables",
                self.dotted(key)
            )));
        }

        let items = match self.raw(key) {
            Some((DeValue::Array(items), _)) => items.as_ref(),
            Some((other, span)) => {
                return Err(wrong_type(
                    self.doc,
                    self.dotted(key),
                    setting.kind,
                    other,
                    Some(span),
                ))
            }
            None if setting.default == DefaultValue::Required => {
                return Err(self.missing(key, setting))
            }
            None => &[],
        };

        let mut tables = Vec::with_capacity(items.len());
        for item in items {
            let DeValue::Table(entries) = item.get_ref() else {
                return Err(wrong_type(
                    self.doc,
                    self.dotted(key),
                    setting.kind,
                    item.get_ref(),
                    Some(item.span()),
                ));
            };
            let table = Table {
                doc: self.doc,
                sections: self.sections,
                section,
                entries: Some(entries),
                span: Some(item.span()),
                prefix: self.dotted(key) + ".",
            };
            table.check_keys()?;
            tables.push(table);
        }
        Ok(tables)
    }

    /// Returns the value of `key` from the file or its default. A required
    /// key that is absent is an error.
    pub(crate) fn get(&self, key: &str) -> Result<Item<'a>, ConfigError> {
        self.get_optional(key)?.ok_or_else(|| {
            self.doc.internal(format!(
                "`{}` has no default, so it must be read as optional",
                self.dotted(key)
            ))
        })
    }

    /// Returns the value of `key` from the file or its default, or `None` when
    /// the key is absent and its default is [`DefaultValue::Absent`].
    pub(crate) fn get_optional(&self, key: &str) -> Result<Option<Item<'a>>, ConfigError> {
        let setting = self.setting(key)?;
        if matches!(setting.kind, SettingKind::Table | SettingKind::TableArray) {
            return Err(self
                .doc
                .internal(format!("`{}` is a table, not a value", self.dotted(key))));
        }

        if let Some((value, span)) = self.raw(key) {
            return Ok(Some(Item {
                doc: self.doc,
                setting,
                key: self.dotted(key),
                value: Cow::Borrowed(value),
                span: Some(span),
                from_default: false,
            }));
        }

        match setting.default {
            DefaultValue::Required => Err(self.missing(key, setting)),
            DefaultValue::Absent(_) => Ok(None),
            DefaultValue::Toml(literal) => {
                let value = DeValue::parse(literal).map_err(|_| {
                    self.doc.internal(format!(
                        "the default `{literal}` of `{}` is not valid TOML",
                        self.dotted(key)
                    ))
                })?;
                Ok(Some(Item {
                    doc: self.doc,
                    setting,
                    key: self.dotted(key),
                    value: Cow::Owned(value.into_inner()),
                    span: self.span.clone(),
                    from_default: true,
                }))
            }
        }
    }
}

/// Returns the valid key closest in spelling to `key`, if it is within one
/// edit per three characters (at least one edit), counting a swap of two
/// neighbouring characters as one edit.
fn closest_key(key: &str, valid: &[&'static str]) -> Option<&'static str> {
    let limit = (key.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|candidate| (strsim::osa_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn wrong_type(
    doc: &Document,
    key: String,
    kind: SettingKind,
    found: &DeValue<'_>,
    span: Span,
) -> ConfigError {
    doc.error(
        span,
        ErrorKind::WrongType {
            key,
            expected: kind.expected(),
            found: found.type_str(),
        },
    )
}

/// A value read from a table, with its setting and position.
pub(crate) struct Item<'a> {
    doc: &'a Document,
    setting: &'static Setting,
    key: String,
    value: Cow<'a, DeValue<'a>>,
    span: Span,
    /// Whether the value is the setting's default. Spans inside a default
    /// literal do not point into the file, so elements use the item's span.
    from_default: bool,
}

impl<'a> Item<'a> {
    /// Returns the raw TOML value, for conversions specific to one setting.
    pub(crate) fn value(&self) -> &DeValue<'a> {
        &self.value
    }

    /// Returns the dotted key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Builds an error located at the value.
    pub(crate) fn error(&self, kind: ErrorKind) -> ConfigError {
        self.doc.error(self.span.clone(), kind)
    }

    /// Builds the error for a value of the wrong TOML type.
    pub(crate) fn wrong_type(&self) -> ConfigError {
        wrong_type(
            self.doc,
            self.key.clone(),
            self.setting.kind,
            &self.value,
            self.span.clone(),
        )
    }

    fn located<T>(&self, value: T) -> Located<T> {
        Located {
            value,
            span: self.span.clone(),
            key: self.key.clone(),
        }
    }

    /// Checks that the settings table declares this item as `kinds`. A
    /// mismatch would make the reference page lie about the type.
    pub(crate) fn expect_kind(&self, kinds: &[SettingKind]) -> Result<(), ConfigError> {
        let declared = std::mem::discriminant(&self.setting.kind);
        if kinds
            .iter()
            .any(|kind| std::mem::discriminant(kind) == declared)
        {
            return Ok(());
        }
        Err(self.doc.internal(format!(
            "`{}` is declared as {:?} but read as {kinds:?}",
            self.key, self.setting.kind
        )))
    }

    /// Converts a string value.
    pub(crate) fn string(&self) -> Result<Located<String>, ConfigError> {
        self.expect_kind(&[SettingKind::String, SettingKind::Release])?;
        match self.value() {
            DeValue::String(text) => Ok(self.located(text.to_string())),
            _ => Err(self.wrong_type()),
        }
    }

    /// Converts a boolean value.
    pub(crate) fn boolean(&self) -> Result<Located<bool>, ConfigError> {
        self.expect_kind(&[SettingKind::Boolean])?;
        match self.value() {
            DeValue::Boolean(flag) => Ok(self.located(*flag)),
            _ => Err(self.wrong_type()),
        }
    }

    /// Converts an integer value within `range`.
    pub(crate) fn integer(&self, range: RangeInclusive<u64>) -> Result<Located<u64>, ConfigError> {
        self.expect_kind(&[SettingKind::Integer])?;
        match self.value() {
            DeValue::Integer(int) => {
                let number =
                    integer_in(int, &range).ok_or_else(|| self.out_of_range(int, &range))?;
                Ok(self.located(number))
            }
            _ => Err(self.wrong_type()),
        }
    }

    fn out_of_range(&self, int: &DeInteger<'_>, range: &RangeInclusive<u64>) -> ConfigError {
        self.error(ErrorKind::InvalidValue {
            key: self.key.clone(),
            value: integer_text(int),
            expected: format!("an integer from {} to {}", range.start(), range.end()),
        })
    }

    /// Converts a size string, or an integer number of bytes.
    pub(crate) fn size(&self) -> Result<Located<Bytes>, ConfigError> {
        self.expect_kind(&[SettingKind::Size])?;
        match self.value() {
            DeValue::String(text) => {
                let bytes = text.parse::<Bytes>().map_err(|reason| {
                    self.error(ErrorKind::InvalidSize {
                        key: self.key.clone(),
                        value: text.to_string(),
                        reason,
                    })
                })?;
                Ok(self.located(bytes))
            }
            DeValue::Integer(int) => {
                let range = 0..=u64::MAX;
                let number =
                    integer_in(int, &range).ok_or_else(|| self.out_of_range(int, &range))?;
                Ok(self.located(Bytes(number)))
            }
            _ => Err(self.wrong_type()),
        }
    }

    /// Converts a string that must be one of the setting's choices.
    pub(crate) fn choice(&self) -> Result<Located<&'static str>, ConfigError> {
        let SettingKind::Choice(choices) = self.setting.kind else {
            return Err(self
                .doc
                .internal(format!("`{}` is not declared as a choice", self.key)));
        };
        let DeValue::String(text) = self.value() else {
            return Err(self.wrong_type());
        };

        match choices.iter().find(|choice| **choice == text.as_ref()) {
            Some(choice) => Ok(self.located(*choice)),
            None => Err(self.error(ErrorKind::UnknownChoice {
                key: self.key.clone(),
                value: text.to_string(),
                choices,
            })),
        }
    }

    /// Converts a path string and resolves it against the file's folder.
    pub(crate) fn path(&self) -> Result<Located<PathBuf>, ConfigError> {
        self.expect_kind(&[SettingKind::Path])?;
        let DeValue::String(text) = self.value() else {
            return Err(self.wrong_type());
        };
        let path = self.resolve_path(text, self.span.clone())?;
        Ok(self.located(path))
    }

    fn resolve_path(&self, text: &str, span: Span) -> Result<PathBuf, ConfigError> {
        if text.is_empty() || text.contains('\0') {
            return Err(self.doc.error(
                span,
                ErrorKind::InvalidValue {
                    key: self.key.clone(),
                    value: text.escape_debug().to_string(),
                    expected: "a non-empty path without NUL characters".to_owned(),
                },
            ));
        }
        Ok(self.doc.resolve(text))
    }

    /// Returns the elements of an array value with their spans.
    fn elements(&self) -> Result<Vec<(&DeValue<'a>, Span)>, ConfigError> {
        let DeValue::Array(items) = self.value() else {
            return Err(self.wrong_type());
        };
        let elements = items
            .iter()
            .map(|item| {
                let span = if self.from_default {
                    self.span.clone()
                } else {
                    Some(item.span())
                };
                (item.get_ref(), span)
            })
            .collect();
        Ok(elements)
    }

    fn element_wrong_type(
        &self,
        index: usize,
        expected: &str,
        found: &DeValue<'_>,
        span: Span,
    ) -> ConfigError {
        self.doc.error(
            span,
            ErrorKind::WrongType {
                key: format!("{}[{index}]", self.key),
                expected: expected.to_owned(),
                found: found.type_str(),
            },
        )
    }

    /// Converts an array of strings.
    pub(crate) fn strings(&self) -> Result<Vec<Located<String>>, ConfigError> {
        self.expect_kind(&[SettingKind::StringList])?;
        let mut strings = Vec::new();
        for (index, (value, span)) in self.elements()?.into_iter().enumerate() {
            let DeValue::String(text) = value else {
                return Err(self.element_wrong_type(index, "a string", value, span));
            };
            strings.push(Located {
                value: text.to_string(),
                span,
                key: self.key.clone(),
            });
        }
        Ok(strings)
    }

    /// Converts an array of path strings, each resolved against the file's
    /// folder.
    pub(crate) fn paths(&self) -> Result<Vec<Located<PathBuf>>, ConfigError> {
        self.expect_kind(&[SettingKind::PathList])?;
        let mut paths = Vec::new();
        for (index, (value, span)) in self.elements()?.into_iter().enumerate() {
            let DeValue::String(text) = value else {
                return Err(self.element_wrong_type(index, "a path string", value, span));
            };
            let path = self.resolve_path(text, span.clone())?;
            paths.push(Located {
                value: path,
                span,
                key: self.key.clone(),
            });
        }
        Ok(paths)
    }

    /// Converts an array of port numbers from 1 to 65535.
    pub(crate) fn ports(&self) -> Result<Vec<Located<u16>>, ConfigError> {
        self.expect_kind(&[SettingKind::PortList])?;
        let range = 1..=u64::from(u16::MAX);
        let mut ports = Vec::new();
        for (index, (value, span)) in self.elements()?.into_iter().enumerate() {
            let DeValue::Integer(int) = value else {
                return Err(self.element_wrong_type(index, "a port number", value, span));
            };
            let port = integer_in(int, &range).and_then(|number| u16::try_from(number).ok());
            let Some(port) = port else {
                return Err(self.doc.error(
                    span,
                    ErrorKind::InvalidValue {
                        key: self.key.clone(),
                        value: integer_text(int),
                        expected: "a port number from 1 to 65535".to_owned(),
                    },
                ));
            };
            ports.push(Located {
                value: port,
                span,
                key: self.key.clone(),
            });
        }
        Ok(ports)
    }
}

/// Returns the integer if it lies in `range`.
pub(crate) fn integer_in(int: &DeInteger<'_>, range: &RangeInclusive<u64>) -> Option<u64> {
    let number = i128::from_str_radix(int.as_str(), int.radix()).ok()?;
    let number = u64::try_from(number).ok()?;
    range.contains(&number).then_some(number)
}

/// Returns the integer as written, with its radix prefix.
pub(crate) fn integer_text(int: &DeInteger<'_>) -> String {
    let prefix = match int.radix() {
        2 => "0b",
        8 => "0o",
        16 => "0x",
        _ => "",
    };
    format!("{prefix}{}", int.as_str())
}

/// Finds the first repeated value in `items` and returns it with the first
/// and second occurrence.
pub(crate) fn first_duplicate<T: PartialEq>(
    items: &[Located<T>],
) -> Option<(&Located<T>, &Located<T>)> {
    items.iter().enumerate().find_map(|(index, later)| {
        items
            .get(..index)?
            .iter()
            .find(|earlier| earlier.value == later.value)
            .map(|earlier| (earlier, later))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(position_in(text, 0), (1, 1));
        assert_eq!(position_in(text, 4), (1, 5));
        assert_eq!(position_in(text, 6), (2, 1));
        // "bé" is three bytes, so byte 9 is the space after it, column 3.
        assert_eq!(position_in(text, 9), (2, 3));
        // An offset inside "é" moves back to its first byte.
        assert_eq!(position_in(text, 8), (2, 2));
        assert_eq!(position_in(text, 1000), (3, 1));
    }

    #[test]
    fn position_skips_byte_order_mark() {
        assert_eq!(position_in("\u{feff}a = 1", 3), (1, 1));
    }

    #[test]
    fn closest_key_allows_one_edit_per_three_characters() {
        let valid = ["size", "esp_size", "state"];
        assert_eq!(closest_key("esp_szie", &valid), Some("esp_size"));
        assert_eq!(closest_key("sise", &valid), Some("size"));
        assert_eq!(closest_key("colour", &valid), None);
        assert_eq!(closest_key("", &valid), None);
    }
}
