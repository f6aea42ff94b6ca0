//! Database URLs whose password never reaches a message.

use std::fmt;

use url::Url;

/// A database URL. `Display` and `Debug` show it with any password replaced by `***`;
/// only [`DbUrl::expose`] gives the real text, for the driver that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(Url);

impl DbUrl {
    pub fn new(url: Url) -> Self {
        DbUrl(url)
    }

    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    pub fn password(&self) -> Option<&str> {
        self.0.password()
    }

    /// The URL with another path (a database name), for database-per-tenant tenants.
    pub fn with_path(&self, path: &str) -> DbUrl {
        let mut url = self.0.clone();
        url.set_path(path);
        DbUrl(url)
    }

    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// The URL's text with its password, if any, replaced by `***`.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hidden_in_display_and_debug() {
        let url = DbUrl::new(Url::parse("postgres://app:s3cr3t@db:5432/app?sslmode=require").unwrap());
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/app?sslmode=require");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        assert!(url.expose().contains("s3cr3t"));
    }
}
