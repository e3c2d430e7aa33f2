//! Payload search without regard to case: a term matches a job whose data's JSON text
//! contains it when both are lower-cased (the Conveyor dashboard API's stores compare
//! this way). An ASCII term, the usual one, is matched in place with `memchr` finding
//! the candidates for its first byte; any other is compared on lower-cased copies.

/// A search term, lower-cased once.
pub struct FoldedTerm {
    lower: String,
    ascii: bool,
}

impl FoldedTerm {
    pub fn new(term: &str) -> Self {
        Self {
            lower: term.to_lowercase(),
            ascii: term.is_ascii(),
        }
    }

    /// Whether `text` contains the term, ignoring case.
    pub fn found_in(&self, text: &str) -> bool {
        if self.ascii {
            contains_ascii_folded(text.as_bytes(), self.lower.as_bytes())
        } else {
            text.to_lowercase().contains(&self.lower)
        }
    }
}

/// `needle` is lower-case ASCII; bytes outside ASCII in `hay` never match it.
fn contains_ascii_folded(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay).any(|at| {
        hay.get(at + 1..at + 1 + rest.len())
            .is_some_and(|tail| tail.eq_ignore_ascii_case(rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ignoring_case_in_ascii_and_beyond() {
        let data = r#"{"Msg":"Hello World","city":"ÉVORA"}"#;
        for term in [
            "hello",
            "HELLO",
            "hElLo wOrLd",
            "msg",
            "\"msg\":\"h",
            "évora",
            "Évora",
        ] {
            assert!(FoldedTerm::new(term).found_in(data), "{term}");
        }
        for term in ["hello!", "worlds", "évoras", "xyz"] {
            assert!(!FoldedTerm::new(term).found_in(data), "{term}");
        }
        assert!(FoldedTerm::new("").found_in(data));
        assert!(
            !FoldedTerm::new("d\"}x").found_in(data),
            "a match cut by the end"
        );
    }
}
