//! Debian machine-readable copyright files (DEP-5, "copyright-format 1.0",
//! <https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/>)
//! and the mapping of their licence short names to SPDX identifiers.
//!
//! Layout: deb822 paragraphs (see [`crate::deb822`]). The first, the
//! header, has a `Format:` field naming the specification. `Files:`
//! paragraphs give the licence of a set of files in `License:`, whose first
//! line is a licence expression over short names (`GPL-2+ or Artistic-2.0`,
//! `LGPL-2.1+ and BSD-3-clause`, `GPL-3+ with Bison exception`; a comma
//! closes everything before it, so `A or B, and C` is `(A or B) and C`).
//! Further lines of `License:` hold the licence text; a stand-alone
//! paragraph with only `License:` gives the text of a short name used in
//! `Files:` paragraphs.
//!
//! A short name that has an SPDX licence (and exception) identifier maps to
//! it; any other becomes [`Licence::Other`], which the SBOM writes as a
//! `LicenseRef-` with the text from the copyright file.

use crate::deb822;
use std::collections::BTreeMap;

/// One licence of an expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Licence {
    /// An SPDX licence identifier, possibly `ID WITH EXCEPTION`.
    Spdx(String),
    /// A DEP-5 short name without an SPDX equivalent, as written.
    Other(String),
}

/// A licence expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expression {
    Licence(Licence),
    /// All of the terms apply.
    And(Vec<Expression>),
    /// Any one of the terms may be chosen.
    Or(Vec<Expression>),
}

impl Expression {
    /// Renders the expression in SPDX syntax, naming each [`Licence::Other`]
    /// with `reference`. Compound terms of a compound expression get
    /// parentheses.
    pub fn render(&self, reference: &dyn Fn(&str) -> String) -> String {
        let join = |terms: &[Expression], operator: &str| {
            let parts: Vec<String> = terms
                .iter()
                .map(|term| match term {
                    Expression::Licence(_) => term.render(reference),
                    _ => format!("({})", term.render(reference)),
                })
                .collect();
            parts.join(operator)
        };
        match self {
            Expression::Licence(Licence::Spdx(id)) => id.clone(),
            Expression::Licence(Licence::Other(name)) => reference(name),
            Expression::And(terms) => join(terms, " AND "),
            Expression::Or(terms) => join(terms, " OR "),
        }
    }

    /// Calls `visit` with every [`Licence::Other`] name in the expression.
    pub fn other_names<'a>(&'a self, visit: &mut dyn FnMut(&'a str)) {
        match self {
            Expression::Licence(Licence::Other(name)) => visit(name),
            Expression::Licence(Licence::Spdx(_)) => {}
            Expression::And(terms) | Expression::Or(terms) => terms.iter().for_each(|term| term.other_names(visit)),
        }
    }
}

/// Licence facts of a DEP-5 copyright file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copyright {
    /// The licences of all `Files:` paragraphs joined with AND, without
    /// repeats; `None` when no paragraph names a licence.
    pub declared: Option<Expression>,
    /// Licence texts by short name (lowercase), from stand-alone `License:`
    /// paragraphs and from `Files:` paragraphs that carry the text.
    pub texts: BTreeMap<String, String>,
}

impl Copyright {
    /// Returns the text the file gives for short name `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Parses a copyright file. Returns `None` when it is not in the DEP-5
/// format: its first paragraph has no `Format:` (or the draft's
/// `Format-Specification:`) field naming the copyright format.
pub fn parse(text: &str) -> Option<Copyright> {
    let paragraphs = deb822::parse(text);
    let header = paragraphs.first()?;
    let format = header.first_line("Format").or_else(|| header.first_line("Format-Specification"))?;
    if !(format.contains("copyright-format") || format.contains("dep5") || format.contains("dep-5")) {
        return None;
    }

    let mut terms = Vec::new();
    let mut texts = BTreeMap::new();
    for paragraph in &paragraphs[1..] {
        let Some(licence) = paragraph.get("License") else { continue };
        let (first, body) = licence.split_once('\n').unwrap_or((licence, ""));
        let name = first.trim();
        if name.is_empty() {
            continue;
        }
        let body = body.trim_matches('\n');
        if !body.trim().is_empty() {
            texts.entry(name.to_ascii_lowercase()).or_insert_with(|| body.to_string());
        }
        if paragraph.get("Files").is_some() {
            match parse_expression(name) {
                Expression::And(inner) => terms.extend(inner),
                other => terms.push(other),
            }
        }
    }

    terms.sort();
    terms.dedup();
    let declared = match terms.len() {
        0 => None,
        1 => terms.pop(),
        _ => Some(Expression::And(terms)),
    };
    Some(Copyright { declared, texts })
}

/// Parses the first line of a `License:` field.
pub fn parse_expression(text: &str) -> Expression {
    // Commas split the expression into segments; each later segment starts
    // with the operator that joins it to everything before it.
    let mut segments = text.split(',');
    let mut result = parse_segment(segments.next().unwrap_or_default());
    for segment in segments {
        let segment = segment.trim();
        let (operator, rest) = segment.split_once(char::is_whitespace).unwrap_or((segment, ""));
        let right = parse_segment(rest);
        result = if operator.eq_ignore_ascii_case("or") { combine(result, right, false) } else { combine(result, right, true) };
    }
    result
}

/// Joins two expressions with AND (`and` true) or OR, flattening nested
/// terms of the same operator.
fn combine(left: Expression, right: Expression, and: bool) -> Expression {
    let mut terms = Vec::new();
    for side in [left, right] {
        match (side, and) {
            (Expression::And(inner), true) | (Expression::Or(inner), false) => terms.extend(inner),
            (other, _) => terms.push(other),
        }
    }
    if and {
        Expression::And(terms)
    } else {
        Expression::Or(terms)
    }
}

/// Parses an expression without commas: `and` binds tighter than `or`.
fn parse_segment(text: &str) -> Expression {
    let words: Vec<&str> = text.split_whitespace().collect();
    let alternatives: Vec<Expression> = words
        .split(|word| word.eq_ignore_ascii_case("or"))
        .map(|alternative| {
            let mut all: Vec<Expression> = alternative.split(|word| word.eq_ignore_ascii_case("and")).map(|words| Expression::Licence(map_name(&words.join(" ")))).collect();
            if all.len() == 1 {
                all.remove(0)
            } else {
                Expression::And(all)
            }
        })
        .collect();
    match <[Expression; 1]>::try_from(alternatives) {
        Ok([single]) => single,
        Err(alternatives) => Expression::Or(alternatives),
    }
}

/// DEP-5 short names (lowercase) whose SPDX identifier is not derived by a
/// rule in [`map_name`].
const SHORT_NAMES: &[(&str, &str)] = &[
    ("0bsd", "0BSD"),
    ("apache-1.0", "Apache-1.0"),
    ("apache-1.1", "Apache-1.1"),
    ("apache-2.0", "Apache-2.0"),
    ("artistic-1.0", "Artistic-1.0"),
    ("artistic-2.0", "Artistic-2.0"),
    ("beerware", "Beerware"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd-4-clause", "BSD-4-Clause"),
    ("bsl-1.0", "BSL-1.0"),
    ("cc0-1.0", "CC0-1.0"),
    ("cddl-1.0", "CDDL-1.0"),
    ("cddl-1.1", "CDDL-1.1"),
    ("cpl-1.0", "CPL-1.0"),
    ("curl", "curl"),
    ("efl-1.0", "EFL-1.0"),
    ("efl-2.0", "EFL-2.0"),
    ("epl-1.0", "EPL-1.0"),
    ("epl-2.0", "EPL-2.0"),
    ("expat", "MIT"),
    ("fsfap", "FSFAP"),
    ("fsful", "FSFUL"),
    ("fsfullr", "FSFULLR"),
    ("ijg", "IJG"),
    ("isc", "ISC"),
    ("libpng", "Libpng"),
    ("libpng-2.0", "libpng-2.0"),
    ("lppl-1.3c", "LPPL-1.3c"),
    ("mit", "MIT"),
    ("mpl-1.0", "MPL-1.0"),
    ("mpl-1.1", "MPL-1.1"),
    ("mpl-2.0", "MPL-2.0"),
    ("ofl-1.1", "OFL-1.1"),
    ("openssl", "OpenSSL"),
    ("psf-2.0", "PSF-2.0"),
    ("python-2.0", "Python-2.0"),
    ("qpl-1.0", "QPL-1.0"),
    ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ("unlicense", "Unlicense"),
    ("w3c", "W3C"),
    ("wtfpl", "WTFPL"),
    ("x11", "X11"),
    ("zlib", "Zlib"),
    ("zope-2.1", "ZPL-2.1"),
    ("zpl-2.1", "ZPL-2.1"),
];

/// A family of GNU licences: DEP-5 prefix, SPDX prefix, and the versions
/// with their SPDX spelling. `GPL-2` is "version 2 only", `GPL-2+` "2 or
/// later".
struct GnuFamily {
    dep5: &'static str,
    spdx: &'static str,
    versions: &'static [(&'static str, &'static str)],
}

const GNU_FAMILIES: &[GnuFamily] = &[
    GnuFamily { dep5: "gpl", spdx: "GPL", versions: &[("1", "1.0"), ("1.0", "1.0"), ("2", "2.0"), ("2.0", "2.0"), ("3", "3.0"), ("3.0", "3.0")] },
    GnuFamily { dep5: "lgpl", spdx: "LGPL", versions: &[("2", "2.0"), ("2.0", "2.0"), ("2.1", "2.1"), ("3", "3.0"), ("3.0", "3.0")] },
    GnuFamily { dep5: "agpl", spdx: "AGPL", versions: &[("3", "3.0"), ("3.0", "3.0")] },
    GnuFamily { dep5: "gfdl", spdx: "GFDL", versions: &[("1.1", "1.1"), ("1.2", "1.2"), ("1.3", "1.3")] },
];

/// Creative Commons licences: the DEP-5 and SPDX names agree up to case.
const CREATIVE_COMMONS: &[&str] = &["cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd"];
const CREATIVE_COMMONS_VERSIONS: &[&str] = &["1.0", "2.0", "2.5", "3.0", "4.0"];

/// Licence exceptions written `with <name> exception`: the name (lowercase),
/// the SPDX prefix of the licence it belongs to, and its SPDX identifier.
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    ("autoconf", "GPL-2.0", "Autoconf-exception-2.0"),
    ("autoconf", "GPL-3.0", "Autoconf-exception-3.0"),
    ("bison", "GPL-", "Bison-exception-2.2"),
    ("classpath", "GPL-2.0", "Classpath-exception-2.0"),
    ("font", "GPL-", "Font-exception-2.0"),
    ("gcc", "GPL-3.0", "GCC-exception-3.1"),
    ("libtool", "GPL-", "Libtool-exception"),
    ("linux-syscall-note", "GPL-2.0", "Linux-syscall-note"),
];

/// Maps one short name, possibly with `with <name> exception`.
pub fn map_name(name: &str) -> Licence {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    if let Some((base, exception)) = lower.split_once(" with ") {
        let exception = exception.trim().trim_end_matches("exception").trim();
        let mapped = spdx_id(base.trim()).and_then(|id| EXCEPTIONS.iter().find(|(name, prefix, _)| *name == exception && id.starts_with(prefix)).map(|(_, _, spdx)| format!("{id} WITH {spdx}")));
        return mapped.map(Licence::Spdx).unwrap_or_else(|| Licence::Other(name.to_string()));
    }
    spdx_id(&lower).map(Licence::Spdx).unwrap_or_else(|| Licence::Other(name.to_string()))
}

/// Returns the SPDX identifier of a lowercase short name without exception.
fn spdx_id(lower: &str) -> Option<String> {
    if let Some((_, id)) = SHORT_NAMES.iter().find(|(short, _)| *short == lower) {
        return Some(id.to_string());
    }
    let (stem, or_later) = match lower.strip_suffix('+') {
        Some(stem) => (stem, true),
        None => (lower, false),
    };
    let suffix = if or_later { "or-later" } else { "only" };
    for family in GNU_FAMILIES {
        // GFDL-NIV: no invariant sections.
        let (version, invariants) = match stem.strip_prefix(family.dep5).and_then(|rest| rest.strip_prefix('-')) {
            Some(rest) if family.dep5 == "gfdl" && rest.starts_with("niv-") => (&rest[4..], "-no-invariants"),
            Some(rest) => (rest, ""),
            None => continue,
        };
        if let Some((_, spdx_version)) = family.versions.iter().find(|(dep5, _)| *dep5 == version) {
            return Some(format!("{}-{spdx_version}{invariants}-{suffix}", family.spdx));
        }
    }
    if or_later {
        return None;
    }
    let (family, version) = stem.rsplit_once('-')?;
    if CREATIVE_COMMONS.contains(&family) && CREATIVE_COMMONS_VERSIONS.contains(&version) {
        return Some(format!("{}-{version}", family.to_ascii_uppercase()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spdx(id: &str) -> Expression {
        Expression::Licence(Licence::Spdx(id.to_string()))
    }

    fn other(name: &str) -> Expression {
        Expression::Licence(Licence::Other(name.to_string()))
    }

    fn render(expression: &Expression) -> String {
        expression.render(&|name| format!("LicenseRef-{name}"))
    }

    #[test]
    fn short_names_map_to_spdx_ids() {
        let cases = [
            ("GPL-2", "GPL-2.0-only"),
            ("GPL-2+", "GPL-2.0-or-later"),
            ("GPL-3.0+", "GPL-3.0-or-later"),
            ("LGPL-2.1+", "LGPL-2.1-or-later"),
            ("LGPL-2.1", "LGPL-2.1-only"),
            ("AGPL-3", "AGPL-3.0-only"),
            ("GFDL-1.3+", "GFDL-1.3-or-later"),
            ("GFDL-NIV-1.2", "GFDL-1.2-no-invariants-only"),
            ("BSD-3-clause", "BSD-3-Clause"),
            ("bsd-2-clause", "BSD-2-Clause"),
            ("Expat", "MIT"),
            ("Zope-2.1", "ZPL-2.1"),
            ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
            ("CC0-1.0", "CC0-1.0"),
            ("Apache-2.0", "Apache-2.0"),
            ("GPL-3+ with Bison exception", "GPL-3.0-or-later WITH Bison-exception-2.2"),
            ("GPL-2+ with Autoconf exception", "GPL-2.0-or-later WITH Autoconf-exception-2.0"),
            ("GPL-2 with Linux-syscall-note exception", "GPL-2.0-only WITH Linux-syscall-note"),
        ];
        for (name, expected) in cases {
            assert_eq!(map_name(name), Licence::Spdx(expected.to_string()), "{name}");
        }
    }

    #[test]
    fn names_without_spdx_id_stay_as_written() {
        for name in ["public-domain", "BSD-3-clause-Regents", "GPL-2+-with-link-exception", "MIT/X11", "GPL", "GPL-4", "GPL-2+ with OpenSSL exception", "Artistic", "CC-BY-5.0", "custom"] {
            assert_eq!(map_name(name), Licence::Other(name.to_string()), "{name}");
        }
    }

    #[test]
    fn expressions_follow_dep5_precedence() {
        assert_eq!(parse_expression("GPL-2+"), spdx("GPL-2.0-or-later"));
        assert_eq!(render(&parse_expression("BSD-2-clause or GPL-2")), "BSD-2-Clause OR GPL-2.0-only");
        assert_eq!(render(&parse_expression("GPL-2+ or LGPL-3+ and ISC")), "GPL-2.0-or-later OR (LGPL-3.0-or-later AND ISC)");
        assert_eq!(render(&parse_expression("GPL-2+ or Artistic-2.0, and BSD-3-clause")), "(GPL-2.0-or-later OR Artistic-2.0) AND BSD-3-Clause");
        assert_eq!(render(&parse_expression("MIT, or Expat and public-domain")), "MIT OR (MIT AND LicenseRef-public-domain)");
        assert_eq!(parse_expression("BSD-3-clause-Berkeley and DEC"), Expression::And(vec![other("BSD-3-clause-Berkeley"), other("DEC")]));
    }

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/copyright").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    #[test]
    fn dep5_file_declares_its_files_licences() {
        let copyright = parse(&fixture("nftables")).expect("nftables is DEP-5");
        let declared = copyright.declared.as_ref().expect("a declared licence");
        assert_eq!(render(declared), "CC-BY-SA-4.0 AND GPL-2.0-only AND GPL-2.0-or-later");
        assert!(copyright.text("GPL-2").is_some_and(|text| text.contains("GNU General Public License")), "the stand-alone paragraph gives the text");
    }

    #[test]
    fn names_without_spdx_id_keep_their_text() {
        let copyright = parse(&fixture("libxtables12")).expect("libxtables12 is DEP-5");
        let declared = render(copyright.declared.as_ref().expect("a declared licence"));
        assert_eq!(declared, "GPL-2.0-only AND GPL-2.0-or-later AND LicenseRef-Artistic AND LicenseRef-custom");
        let mut names = Vec::new();
        let expression = parse_expression("Artistic and custom");
        expression.other_names(&mut |name| names.push(name));
        assert_eq!(names, ["Artistic", "custom"]);
        assert!(copyright.text("custom").is_some_and(|text| !text.is_empty()), "the custom licence has its text");
        assert!(copyright.text("Artistic").is_some_and(|text| text.contains("Artistic")));
    }

    #[test]
    fn compound_files_licences_are_flattened() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: someone\nLicense: GPL-2+ and ISC\n\nFiles: a/*\nCopyright: other\nLicense: ISC\n\nFiles: b/*\nCopyright: other\nLicense: BSD-2-clause or GPL-2\n";
        let declared = parse(text).and_then(|copyright| copyright.declared).expect("a declared licence");
        assert_eq!(render(&declared), "GPL-2.0-or-later AND ISC AND (BSD-2-Clause OR GPL-2.0-only)");
    }

    #[test]
    fn non_dep5_file_declares_nothing() {
        assert_eq!(parse(&fixture("busybox-static")), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("Format: something else\n\nFiles: *\nLicense: GPL-2\n"), None);
    }

    #[test]
    fn dep5_file_without_licences_declares_none() {
        let copyright = parse("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n").expect("DEP-5 header");
        assert_eq!(copyright.declared, None);
    }
}
