//! Text from outside fleetmig (a database's message, DETAIL and HINT, a lock holder's
//! application name) made safe to print on one line of a terminal or a table.

use std::fmt::Write;

/// The most characters of one such text a line prints; the rest is counted.
pub const PRINTED_CHARS: usize = 1000;

/// `text` on one line: each run of whitespace (newlines, tabs) becomes one space, and every
/// other control character (an ANSI escape, a bell, a backspace) and bidirectional override
/// is shown escaped (`\u{1b}`), so what a database says cannot move the cursor, clear the
/// screen, recolour the terminal or break a table's rows.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_control() || is_bidi_control(c) {
                let _ = write!(out, "{}", c.escape_unicode());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// A line of fleetmig's own (aligned with spaces) with the text it quotes made safe: as
/// [`printable`], but spaces are kept and each newline or tab becomes one space.
pub fn escape_controls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_whitespace() && c.is_control() {
            out.push(' ');
        } else if c.is_control() || is_bidi_control(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`], cut to [`PRINTED_CHARS`] characters with a note of how many more there were.
pub fn printable_bounded(text: &str) -> String {
    let line = printable(text);
    let total = line.chars().count();
    if total <= PRINTED_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(PRINTED_CHARS).collect();
    let _ = write!(cut, "… ({} more characters)", total - PRINTED_CHARS);
    cut
}

/// Characters that reorder the text around them on display (Trojan Source).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_newlines_are_shown_not_obeyed() {
        assert_eq!(
            printable("boom\x1b[2J\x1b[31mred\nsecond\r\tline\x07 \u{202E}gnp"),
            "boom\\u{1b}[2J\\u{1b}[31mred second line\\u{7} \\u{202e}gnp"
        );
        assert_eq!(
            printable("  Key (email)=(a@x)\n is duplicated. "),
            "Key (email)=(a@x) is duplicated."
        );
    }

    #[test]
    fn a_line_keeps_its_alignment() {
        assert_eq!(
            escape_controls("  acme    FAILED a\nb\x1b[0m"),
            "  acme    FAILED a b\\u{1b}[0m"
        );
    }

    #[test]
    fn long_text_is_cut_with_a_count() {
        let long = "é".repeat(PRINTED_CHARS + 5);
        let cut = printable_bounded(&long);
        assert!(cut.ends_with("é… (5 more characters)"), "{cut}");
        assert_eq!(
            cut.chars().count(),
            PRINTED_CHARS + "… (5 more characters)".chars().count()
        );
        assert_eq!(printable_bounded("short"), "short");
    }
}
