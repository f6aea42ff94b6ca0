//! Where a migrations folder comes from: the git commit of the work tree holding it, for
//! the ledger's record of which migrations a run applied.

use std::path::Path;
use std::process::Command;

/// The commit `HEAD` of the git work tree holding `dir`, and whether `dir` has changes not
/// committed (or files git does not track); `None` when `dir` is in no work tree or git is
/// not installed.
pub fn git_commit(dir: &Path) -> Option<(String, bool)> {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--verify", "--quiet", "HEAD"])?;
    if commit.is_empty() {
        return None;
    }
    let dirty = git(&["status", "--porcelain", "--", "."]).is_none_or(|s| !s.is_empty());
    Some((commit, dirty))
}
