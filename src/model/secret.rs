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

    /// The password as written in the URL, for scrubbing from messages: the user info's, or
    /// else the first credential-bearing query parameter's (`?password=`, `sslpassword=`).
    pub fn password(&self) -> Option<&str> {
        self.0.password().or_else(|| {
            self.0.query()?.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (is_secret_param(key) && !value.is_empty()).then_some(value)
            })
        })
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

/// True for a URL query parameter (or connection-string key) that may carry a credential:
/// `password`, `sslpassword`, `pwd`, `token`, `secret`, `sslkey`, ... Errs on the side of
/// hiding.
pub fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    // Settings whose names only look like it (SQLite's `foreign_keys`).
    if key == "foreign_keys" {
        return false;
    }
    ["pass", "pwd", "secret", "token", "key", "auth", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

/// The URL's text with its password and every credential-bearing query parameter's value,
/// if any, replaced by `***`; also one a mistyped URL hides in another parameter's value
/// or the fragment (`?sslmode=disable?password=...`, `;password=...`, `#password=...`).
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if let Some(query) = url.query() {
        let hidden: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.set_query(Some(&hidden.join("&")));
    }
    hide_secret_params(shown.as_str())
}

/// `text` with every credential in it hidden, wherever a URL or connection string may have
/// put one: the password of every `scheme://user:password@`, and the value of every
/// `key=value` whose key may carry a credential (`?password=...`, `&sslpassword=...`).
/// Errs on the side of hiding: for the user info, everything from the first `:` after
/// `://` up to the last `@` before white space or a quote goes.
pub fn scrub(text: &str) -> String {
    hide_secret_params(&hide_userinfo(text))
}

fn hide_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .unwrap_or(tail.len());
        let word = &tail[..end];
        match (word.find(':'), word.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => {
                out.push_str(&word[..=colon]);
                out.push_str("***");
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn hide_secret_params(text: &str) -> String {
    let is_key = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let key_start = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_key(*c))
            .last()
            .map_or(head.len(), |(i, _)| i);
        let key = &head[key_start..];
        out.push_str(head);
        out.push('=');
        let tail = &tail[1..];
        if is_secret_param(key) {
            let end = tail
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '`' | '#' | ';' | ','))
                .unwrap_or(tail.len());
            if end > 0 {
                out.push_str("***");
            }
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
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

    #[test]
    fn credential_query_parameters_are_hidden_too() {
        let url = DbUrl::new(
            Url::parse("postgres://app@db/app?sslmode=require&password=s3cr3t&sslpassword=k3y%21&application_name=x")
                .unwrap(),
        );
        assert_eq!(
            url.to_string(),
            "postgres://app@db/app?sslmode=require&password=***&sslpassword=***&application_name=x"
        );
        assert_eq!(url.password(), Some("s3cr3t"));
        let text = "ledger `mysql://u:pw@h/?ssl-mode=required&password=s3cr3t` and password=k3y, pwd=x \"token=abc\"";
        assert_eq!(
            scrub(text),
            "ledger `mysql://u:***@h/?ssl-mode=required&password=***` and password=***, pwd=*** \"token=***\""
        );
        assert_eq!(scrub("a = b, x==y, é=1"), "a = b, x==y, é=1");
    }

    #[test]
    fn a_credential_in_a_mistyped_query_is_hidden_too() {
        for (text, shown) in [
            (
                "postgres://u@h/d?sslmode=disable?sslpassword=s3cr3t",
                "postgres://u@h/d?sslmode=disable?sslpassword=***",
            ),
            (
                "postgres://u@h/d?x=1;password=s3cr3t",
                "postgres://u@h/d?x=1;password=***",
            ),
            ("mysql://u@h/d#password=s3cr3t", "mysql://u@h/d#password=***"),
        ] {
            let url = DbUrl::new(Url::parse(text).unwrap());
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("s3cr3t"));
        }
    }
}
