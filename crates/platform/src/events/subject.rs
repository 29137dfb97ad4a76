//! NATS subject matching, so the in-process bus routes exactly as JetStream does.

/// Whether `subject` matches `pattern`: tokens split on `.`, `*` matches one token, a final
/// `>` matches one or more.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut pattern_tokens = pattern.split('.').peekable();
    while let Some(pattern_token) = pattern_tokens.next() {
        if pattern_token == ">" && pattern_tokens.peek().is_none() {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(token) if pattern_token == "*" || pattern_token == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn matches_as_nats_does() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
        assert!(subject_matches("a.*.c", "a.x.c"));
        assert!(!subject_matches("a.*", "a.x.c"));
        assert!(subject_matches("a.>", "a.x.c"));
        assert!(subject_matches("a.>", "a.x"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches(">", "a"));
    }
}
