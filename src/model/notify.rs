//! Webhooks a run notifies (`--notify`, the fleet file's `notify:`): where, in which body
//! shape, and the address as messages may show it.

use std::fmt;
use std::str::FromStr;

use url::Url;

/// The body a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyFormat {
    /// The event as JSON Lines print it, with the run's id and fleet beside it.
    #[default]
    Json,
    /// A Slack incoming webhook's `{"text": ...}`.
    Slack,
}

impl FromStr for NotifyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(NotifyFormat::Json),
            "slack" => Ok(NotifyFormat::Slack),
            other => Err(format!("`{other}` is not a notify format (json or slack)")),
        }
    }
}

/// One webhook. Its URL is a secret: Slack's and most services' carry their token in the
/// path or the query, so `Display` and `Debug` show [`Webhook::redacted`] only.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: Url,
    pub format: NotifyFormat,
}

/// A webhook address that is not an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}`: {why}")]
pub struct BadWebhook {
    /// What was given, with anything that may be a secret hidden.
    pub shown: String,
    pub why: String,
}

impl Webhook {
    pub fn parse(text: &str, format: NotifyFormat) -> Result<Webhook, BadWebhook> {
        let bad = |why: String| BadWebhook {
            shown: match Url::parse(text) {
                Ok(url) => redact(&url),
                // Not a URL: nothing of it can be told apart from a token.
                Err(_) => "***".to_owned(),
            },
            why,
        };
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        match url.scheme() {
            "http" | "https" if url.host_str().is_some() => Ok(Webhook { url, format }),
            "http" | "https" => Err(bad("no host".into())),
            other => Err(bad(format!("`{other}:` is not http or https"))),
        }
    }

    /// The real address, for the one request that posts to it.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// The address with everything that may be a token hidden.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Display for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({}, {:?})", self.redacted(), self.format)
    }
}

/// Scheme, host, port and the first path segment stay (`https://hooks.slack.com/services/***`);
/// user info, the rest of the path, the query and the fragment go, for a webhook's token
/// may be in any of them.
fn redact(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let mut segments = url.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
    if let Some(first) = segments.next() {
        shown.push('/');
        shown.push_str(first);
    }
    if segments.next().is_some() || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        shown.push_str("/***");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show() {
        let slack = Webhook::parse(
            "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            NotifyFormat::Slack,
        )
        .unwrap();
        assert_eq!(slack.to_string(), "https://hooks.slack.com/services/***");
        assert!(!format!("{slack:?}").contains("SECRET"));
        let query = Webhook::parse("http://user:pw@127.0.0.1:9/hook?token=SECRET", NotifyFormat::Json).unwrap();
        assert_eq!(query.redacted(), "http://127.0.0.1:9/hook/***");
        let plain = Webhook::parse("http://127.0.0.1:8080/events", NotifyFormat::Json).unwrap();
        assert_eq!(plain.redacted(), "http://127.0.0.1:8080/events");
        assert_eq!(plain.expose(), "http://127.0.0.1:8080/events");
    }

    #[test]
    fn only_http_urls_are_taken_and_the_error_hides_the_token() {
        let e = Webhook::parse("ftp://example.com/x/SECRET", NotifyFormat::Json).unwrap_err();
        assert_eq!(e.to_string(), "`ftp://example.com/x/***`: `ftp:` is not http or https");
        let e = Webhook::parse("not a url SECRET", NotifyFormat::Json).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!("teams".parse::<NotifyFormat>().is_err());
    }
}
