//! Identifier quoting. Identifiers are validated when the fleet file loads; quoting them
//! anyway keeps names like `Tenant-1` working and makes injection impossible twice over.

/// `"name"` for PostgreSQL and SQLite, with embedded quotes doubled.
pub fn double(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `` `name` `` for MySQL, with embedded backticks doubled.
pub fn backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_are_doubled() {
        assert_eq!(super::double("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::backtick("a`b"), "`a``b`");
    }
}
