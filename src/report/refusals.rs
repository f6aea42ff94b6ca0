//! Tenants with the same problem, told once: the count, a few ids, short checksums and
//! what to do. For `status`, `plan` and a run's report; JSON keeps every tenant's own.

/// Up to `shown` ids, then how many more: `acme, beta, gamma and 9 more`.
pub fn few(ids: &[&str], shown: usize) -> String {
    if ids.len() <= shown + 1 {
        return ids.join(", ");
    }
    format!("{} and {} more", ids[..shown].join(", "), ids.len() - shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_names_a_few_and_counts_the_rest() {
        assert_eq!(few(&["a"], 3), "a");
        assert_eq!(few(&["a", "b", "c", "d"], 3), "a, b, c, d");
        assert_eq!(few(&["a", "b", "c", "d", "e"], 3), "a, b, c and 2 more");
    }
}
