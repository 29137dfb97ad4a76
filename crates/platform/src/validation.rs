//! Collecting every invalid field of an input before answering, so a client learns all of
//! them from one 422 instead of fixing them one round trip at a time.

use crate::http::FieldViolation;

/// The violations found so far while a whole input is checked.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldViolation::new(field, message));
    }

    /// Keeps the value of `result`, or records its error under `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(field, message.to_string());
                None
            }
        }
    }

    /// The value of a field the input must carry, or `None` after recording that it is missing.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was recorded, else every violation in the order found.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_is_kept_in_order() {
        let mut violations = Violations::new();
        assert_eq!(
            violations.check::<u8, _>("a", "x".parse::<u8>().map_err(|_| "not a number")),
            None
        );
        assert_eq!(violations.check("b", Ok::<_, String>(2)), Some(2));
        assert_eq!(violations.required::<&str>("c", None), None);
        assert_eq!(violations.required("d", Some("here")), Some("here"));
        let errors = violations.finish().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "c"]);
        assert_eq!(errors[0].message, "not a number");
        assert_eq!(errors[1].message, "is required");
    }

    #[test]
    fn no_violation_is_ok() {
        assert!(Violations::new().finish().is_ok());
    }
}
