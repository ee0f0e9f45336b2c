//! Errors of single values: a field that does not hold a valid value ([`ModelError`]), all of
//! them for one message ([`ModelErrors`]). Faults of a whole directory are in [`super::directory`].

use std::fmt;

use super::pattern::PatternError;

/// Why one field's value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldFault {
    /// The field is empty but required.
    #[error("must not be empty")]
    Empty,
    /// The value has more characters (or items) than allowed.
    #[error("is longer than {max}")]
    TooLong {
        /// The maximum allowed.
        max: usize,
    },
    /// The value holds a character not allowed in this field.
    #[error("contains the character {ch:?}, which is not allowed here")]
    InvalidCharacter {
        /// The first offending character.
        ch: char,
    },
    /// An identifier must start with a letter or a digit.
    #[error("must start with a letter or a digit")]
    MustStartAlphanumeric,
    /// A number must be made of decimal digits only.
    #[error("{value:?} is not a number made of decimal digits")]
    NotDigits {
        /// The value given.
        value: String,
    },
    /// A hexadecimal digest has the wrong length.
    #[error("must be {expected} hexadecimal characters, found {found}")]
    HexLength {
        /// The required number of characters.
        expected: usize,
        /// The number given.
        found: usize,
    },
    /// A hexadecimal digest holds a character outside `0-9a-f`.
    #[error("must be hexadecimal (0-9, a-f)")]
    NotHex,
    /// The two ends of a number range differ in length or in the leading `+`.
    #[error("range ends {first:?} and {last:?} differ in length or format")]
    RangeEndsDiffer {
        /// First number given.
        first: String,
        /// Last number given.
        last: String,
    },
    /// A number range ends before it starts.
    #[error("range {first}-{last} ends before it starts")]
    RangeReversed {
        /// First number given.
        first: String,
        /// Last number given.
        last: String,
    },
    /// A `first-last` range or `number=trunk` pair is not written as such.
    #[error("{value:?} is not of the form {expected}")]
    Malformed {
        /// The value given.
        value: String,
        /// The expected form.
        expected: &'static str,
    },
    /// An address lacks its `:port`.
    #[error("{value:?} must be host:port")]
    MissingPort {
        /// The value given.
        value: String,
    },
    /// The port is not a number in 1–65535.
    #[error("port {value:?} is not in 1-65535")]
    InvalidPort {
        /// The port text given.
        value: String,
    },
    /// The host is not a DNS name, an IPv4 address or a bracketed IPv6 address.
    #[error("host {value:?} is not a DNS name, an IPv4 address or a bracketed IPv6 address")]
    InvalidHost {
        /// The host text given.
        value: String,
    },
    /// An e-mail address that is not `local@domain.tld`.
    #[error("{value:?} is not an e-mail address")]
    InvalidEmail {
        /// The value given.
        value: String,
    },
    /// A textual enum value that is not one of the accepted names.
    #[error("{value:?} is not one of {expected}")]
    UnknownName {
        /// The value given.
        value: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A protobuf enum left at UNSPECIFIED where a choice is required.
    #[error("must be set")]
    Unspecified,
    /// A protobuf enum number this version does not know.
    #[error("unknown enum value {value}")]
    UnknownEnumValue {
        /// The number received.
        value: i32,
    },
    /// A number field outside its allowed interval.
    #[error("{value} is not in {min}-{max}")]
    OutOfRange {
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A list holds the same item twice.
    #[error("lists {item:?} twice")]
    DuplicateItem {
        /// The repeated item.
        item: String,
    },
    /// A route pattern that does not follow the dial-pattern syntax.
    #[error("{0}")]
    Pattern(#[from] PatternError),
    /// Both targets of a route are set (a route goes to a trunk or to a site, not both).
    #[error("a route goes to a trunk or to a site, not both")]
    BothTargets,
}

/// A field (named as in the proto and the import columns, with an index for list items) whose
/// value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The field holds an invalid value.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, e.g. `ha1_md5` or `number_ranges[1]`.
        field: String,
        /// What is wrong with it.
        reason: FieldFault,
    },
    /// A protobuf `Entry` (or other required message) with nothing set.
    #[error("{field}: missing")]
    MissingField {
        /// The field.
        field: String,
    },
}

impl ModelError {
    /// An invalid-field error.
    pub fn field(field: impl Into<String>, reason: FieldFault) -> ModelError {
        ModelError::InvalidField {
            field: field.into(),
            reason,
        }
    }

    /// The field at fault.
    pub fn field_name(&self) -> &str {
        match self {
            ModelError::InvalidField { field, .. } | ModelError::MissingField { field } => field,
        }
    }
}

/// Every invalid field of one message or record (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ModelErrors(pub Vec<ModelError>);

impl fmt::Display for ModelErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ModelError> for ModelErrors {
    fn from(error: ModelError) -> ModelErrors {
        ModelErrors(vec![error])
    }
}

impl ModelErrors {
    /// Prefixes every field name with `prefix.` (for nested messages).
    pub fn nested(self, prefix: &str) -> ModelErrors {
        ModelErrors(
            self.0
                .into_iter()
                .map(|e| match e {
                    ModelError::InvalidField { field, reason } => ModelError::InvalidField {
                        field: format!("{prefix}.{field}"),
                        reason,
                    },
                    ModelError::MissingField { field } => ModelError::MissingField {
                        field: format!("{prefix}.{field}"),
                    },
                })
                .collect(),
        )
    }
}

/// Collects the results of converting each field, so that every invalid field is reported, not
/// only the first: `let (a, b) = all_fields!(errors; a = …, b = …);`.
macro_rules! all_fields {
    ($($name:ident = $value:expr),+ $(,)?) => {
        let mut errors: Vec<$crate::model::ModelError> = Vec::new();
        $(
            let $name = match $value {
                Ok(v) => Some(v),
                Err(e) => {
                    $crate::model::error::Collect::collect_into(e, &mut errors);
                    None
                }
            };
        )+
        let ($($name,)+) = match ($($name,)+) {
            ($(Some($name),)+) => ($($name,)+),
            _ => return Err($crate::model::ModelErrors(errors)),
        };
    };
}
pub(crate) use all_fields;

/// Errors that [`all_fields!`] can gather (a single field error or several).
pub(crate) trait Collect {
    /// Appends self to `errors`.
    fn collect_into(self, errors: &mut Vec<ModelError>);
}

impl Collect for ModelError {
    fn collect_into(self, errors: &mut Vec<ModelError>) {
        errors.push(self);
    }
}

impl Collect for ModelErrors {
    fn collect_into(self, errors: &mut Vec<ModelError>) {
        errors.extend(self.0);
    }
}
