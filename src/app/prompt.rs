//! The operator's terminal: whether there is one to ask on, and the questions asked on it
//! (`--confirm` between waves, a `down` to version 0). The dispatcher only gets a `Prompt`.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::exec::dispatch::Prompt;
use crate::report::gates::PlainPrompt;
use crate::report::progress::ProgressReporter;

/// True when standard input is a terminal, so a question can be answered.
pub(super) fn can_confirm() -> bool {
    std::io::stdin().is_terminal()
}

/// Who asks `--confirm`'s question: the progress bars, held while it is up, or plain lines
/// on standard error.
pub(super) fn wave_prompt(bars: Option<&ProgressReporter>) -> Arc<dyn Prompt> {
    match bars {
        Some(bars) => Arc::new(bars.prompt()),
        None => Arc::new(PlainPrompt),
    }
}

/// Asks `question` on standard error and reads the answer from standard input, on a
/// blocking thread; true only for a yes.
pub(super) async fn ask_yes(question: String) -> bool {
    let answer = tokio::task::spawn_blocking(move || {
        eprint!("{question}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes"))
}
