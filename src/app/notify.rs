//! Posting notices to webhooks. Each webhook has its own thread and queue, so a slow or
//! dead endpoint delays neither the rollout nor another webhook; the run only waits, at its
//! end and for at most [`FLUSH`], for the last notices to go out.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::model::notify::Webhook;
use crate::report::notify::Notice;

/// The longest one post may take, connecting included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per notice; after a notice failed every try, its webhook gets one try per notice.
const TRIES: u32 = 3;
/// The wait before the second try, doubled before each later one.
const BACKOFF: Duration = Duration::from_millis(500);
/// How long the end of a run waits for notices still queued.
pub const FLUSH: Duration = Duration::from_secs(2);

/// One webhook's queue and thread.
struct Line {
    webhook: Webhook,
    /// Notices to post, in order; dropped to tell the thread the run is over.
    queue: mpsc::Sender<Notice>,
    /// Says the thread has posted (or given up on) everything it was sent.
    done: mpsc::Receiver<()>,
}

/// The run's webhooks. Sending never blocks.
pub struct Notifier {
    lines: Vec<Line>,
    /// What could not be delivered, in words that hide each webhook's token.
    failures: Arc<Mutex<Vec<String>>>,
}

impl Notifier {
    pub fn new(webhooks: Vec<Webhook>) -> Notifier {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(POST_TIMEOUT))
            .user_agent(concat!("fleetmig/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let lines = webhooks
            .into_iter()
            .map(|webhook| {
                let (queue, notices) = mpsc::channel::<Notice>();
                let (finished, done) = mpsc::channel();
                let (agent, hook, failures) = (agent.clone(), webhook.clone(), failures.clone());
                thread::spawn(move || {
                    post_all(&agent, &hook, notices, &failures);
                    let _ = finished.send(());
                });
                Line { webhook, queue, done }
            })
            .collect();
        Notifier { lines, failures }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn send(&self, notice: &Notice) {
        for line in &self.lines {
            let _ = line.queue.send(notice.clone());
        }
    }

    /// Closes the queues and waits, all webhooks together at most `wait` ([`FLUSH`] but
    /// after an abandon), for them to drain. Returns what was not delivered: failures, and
    /// notices still queued.
    pub fn finish(self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut late = Vec::new();
        let lines: Vec<_> = self
            .lines
            .into_iter()
            .map(|l| {
                drop(l.queue);
                (l.webhook, l.done)
            })
            .collect();
        for (webhook, done) in lines {
            match done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => late.push(format!(
                    "notify {webhook}: still posting after the run's end (waited {}); the rest is dropped",
                    humantime::format_duration(wait)
                )),
            }
        }
        let mut failures = std::mem::take(&mut *self.failures.lock().expect("no poster panics holding it"));
        failures.extend(late);
        failures
    }
}

/// A webhook's thread: posts each notice in order, retrying as [`TRIES`] says.
fn post_all(agent: &ureq::Agent, webhook: &Webhook, notices: mpsc::Receiver<Notice>, failures: &Mutex<Vec<String>>) {
    let mut tries = TRIES;
    for notice in notices {
        let body = notice.body(webhook.format);
        let mut last = String::new();
        let mut delivered = false;
        for attempt in 0..tries {
            if attempt > 0 {
                thread::sleep(BACKOFF * 2u32.pow(attempt - 1));
            }
            match post(agent, webhook, &body) {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(Failure { why, retry }) => {
                    tracing::warn!(webhook = %webhook, event = notice.event, attempt = attempt + 1, "notify failed: {why}");
                    last = why;
                    if !retry {
                        break;
                    }
                }
            }
        }
        if !delivered {
            tries = 1;
            failures
                .lock()
                .expect("no poster panics holding it")
                .push(format!("notify {webhook}: `{}` not delivered: {last}", notice.event));
        }
    }
}

/// Why a post failed, and whether another try may do better.
struct Failure {
    why: String,
    retry: bool,
}

fn post(agent: &ureq::Agent, webhook: &Webhook, body: &str) -> Result<(), Failure> {
    match agent
        .post(webhook.expose())
        .header("content-type", "application/json")
        .send(body)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::StatusCode(code)) => Err(Failure {
            why: format!("HTTP {code}"),
            // A client error will not mend itself, except for too many requests.
            retry: code >= 500 || code == 429 || code == 408,
        }),
        Err(e) => Err(Failure {
            // ureq's messages may quote the URL: the token must not show.
            why: hide(&e.to_string(), webhook),
            retry: true,
        }),
    }
}

/// `text` with the webhook's real address replaced by its redacted one.
fn hide(text: &str, webhook: &Webhook) -> String {
    let shown = text.replace(webhook.expose(), &webhook.redacted());
    crate::model::secret::scrub(&shown)
}
