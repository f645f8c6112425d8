//! SQL text for batches: a batch's statement holds a fixed number of rows, a bucket of
//! [`BUCKETS`], padded with rows that match nothing, so that each statement has four texts in all
//! and stays in sqlx's prepared-statement cache. The texts are written once with `$N` and given
//! to SQLite with `?` ([`anonymous`]).

use std::fmt::Write as _;

use super::batch::MAX_BATCH;

/// Rows a batch's SQL text holds: the smallest bucket that fits the batch.
pub const BUCKETS: [usize; 4] = [1, 4, 16, MAX_BATCH];

/// The index in [`BUCKETS`] of the smallest bucket that holds `n` rows.
pub fn bucket(n: usize) -> usize {
    BUCKETS
        .iter()
        .position(|&b| n <= b)
        .unwrap_or(BUCKETS.len() - 1)
}

/// `$first, $first+1, ...`: `n` placeholders.
pub fn placeholders(n: usize, first: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}${}", first + i);
    }
    out
}

/// `($first, ...), (...)`: `rows` tuples of `width` placeholders.
pub fn values(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        let sep = if r == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}({})", placeholders(width, first + r * width));
    }
    out
}

/// One text per bucket, as PostgreSQL takes it (`$N`) and as SQLite binds it fastest (`?`).
#[derive(Debug)]
pub struct Dialects {
    pub postgres: [String; BUCKETS.len()],
    pub sqlite: [String; BUCKETS.len()],
}

impl Dialects {
    /// `build(rows)` for every bucket, in both forms.
    pub fn new(build: fn(usize) -> String) -> Self {
        let postgres = BUCKETS.map(build);
        let sqlite = postgres.clone().map(|t| anonymous(&t));
        Self { postgres, sqlite }
    }
}

/// `$N` to `?`. sqlite3_bind_parameter_name scans the list of named parameters, so binding n of
/// them costs n² (a group commit of 64 has over a thousand); anonymous ones bind in the order
/// they appear, which every text here numbers in (a test checks).
pub fn anonymous(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The `$N` of a text, in the order they appear (for the tests that check the numbering).
#[cfg(test)]
pub fn numbers(text: &str) -> Vec<usize> {
    text.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fit_every_batch_size() {
        for n in 1..=MAX_BATCH {
            let b = bucket(n);
            assert!(BUCKETS[b] >= n, "{n}");
            assert!(b == 0 || BUCKETS[b - 1] < n, "{n}");
        }
    }

    #[test]
    fn placeholders_values_and_their_anonymous_form() {
        assert_eq!(placeholders(3, 2), "$2, $3, $4");
        assert_eq!(values(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(anonymous("a $1, $23 b$ c$x"), "a ?, ? b$ c$x");
        assert_eq!(numbers("x $3 y $10"), [3, 10]);
    }
}
