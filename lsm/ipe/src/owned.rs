// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! An owned policy for host code (the `alloc` feature): the text and
//! storage in vectors sized by [`measure`](crate::measure).

use alloc::vec;
use alloc::vec::Vec;

use crate::error::ParseError;
use crate::eval::{evaluate, Decision, Event, Providers};
use crate::parser::{measure, parse_measured};
use crate::policy::{IndexEntry, PolicyHeader, PolicyRef, Property, Rule, Storage};
use crate::print::write_policy;

/// A parsed policy that owns its text and storage.
#[derive(Clone, Debug)]
pub struct Policy {
    text: Vec<u8>,
    header: PolicyHeader,
    rules: Vec<Rule>,
    properties: Vec<Property>,
    digest_bytes: Vec<u8>,
    index: Vec<IndexEntry>,
    plain_rules: Vec<u32>,
}

impl Policy {
    /// Parses a policy text.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] with the errno Linux 6.12 returns for this text.
    pub fn parse(text: &[u8]) -> Result<Policy, ParseError> {
        let text = crate::lexer::truncate_at_nul(text).to_vec();
        let counts = measure(&text);
        let mut rules = vec![Rule::EMPTY; counts.rules];
        let mut properties = vec![Property::EMPTY; counts.properties];
        let mut digest_bytes = vec![0u8; counts.digest_bytes];
        let mut index = vec![IndexEntry::default(); counts.indexed_rules];
        let mut plain_rules = vec![0u32; counts.plain_rules];
        let mut storage = Storage {
            rules: &mut rules,
            properties: &mut properties,
            digest_bytes: &mut digest_bytes,
            index: &mut index,
            plain_rules: &mut plain_rules,
        };
        let header = *parse_measured(&text, &counts, &mut storage)?.header();
        Ok(Policy { text, header, rules, properties, digest_bytes, index, plain_rules })
    }

    /// The policy as a borrowed [`PolicyRef`].
    pub fn as_ref(&self) -> PolicyRef<'_> {
        PolicyRef {
            text: &self.text,
            header: self.header,
            rules: &self.rules,
            properties: &self.properties,
            digest_bytes: &self.digest_bytes,
            index: &self.index,
            plain_rules: &self.plain_rules,
        }
    }

    /// The canonical text (see [`print`](crate::print)).
    pub fn to_text(&self) -> Vec<u8> {
        let mut text = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = write_policy(&mut text, &self.as_ref());
        text
    }

    /// Evaluates an event with the digest index.
    pub fn evaluate(&self, event: &Event<'_>, providers: Providers) -> Decision {
        evaluate(&self.as_ref(), event, providers)
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.as_ref() == other.as_ref()
    }
}
