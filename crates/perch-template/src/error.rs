//! The one error type of this crate.

use std::path::PathBuf;

/// Why a chat template could not be loaded or rendered.
///
/// Every variant names the problem in words a user can act on; template errors carry the
/// line in the template where it happened when minijinja knows it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template does not parse.
    #[error("chat template syntax error{}: {detail}", at_line(*.line))]
    Syntax {
        /// Line of the template (1-based) where parsing failed, when known.
        line: Option<usize>,
        /// What is wrong.
        detail: String,
    },
    /// The template called `raise_exception(message)`: it rejects this conversation.
    #[error("chat template rejected the conversation{}: {message}", at_line(*.line))]
    Raised {
        /// Line of the `raise_exception` call, when known.
        line: Option<usize>,
        /// The message the template passed to `raise_exception`.
        message: String,
    },
    /// Rendering failed (an undefined value used, a type error, a bad filter argument, ...).
    #[error("chat template failed{}: {detail}", at_line(*.line))]
    Render {
        /// Line of the template (1-based) where rendering failed, when known.
        line: Option<usize>,
        /// What failed.
        detail: String,
    },
    /// The template ran out of its instruction budget or recursion depth: it is too
    /// expensive (or hostile) to render.
    #[error("chat template exceeded its {limit} limit{}", at_line(*.line))]
    LimitExceeded {
        /// Which limit: `"instruction (fuel)"`, `"recursion"` or `"output size"`.
        limit: &'static str,
        /// Line of the template where the limit was hit, when known.
        line: Option<usize>,
    },
    /// The messages, tools or extra context given to the template are malformed.
    #[error("invalid chat input: {0}")]
    InvalidInput(String),
    /// A template file (e.g. `--chat-template FILE`) could not be read.
    #[error("cannot read chat template {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn at_line(line: Option<usize>) -> String {
    match line {
        Some(l) => format!(" at line {l}"),
        None => String::new(),
    }
}

/// Marker carried as the source of the minijinja error `raise_exception` produces, so the
/// error can be told apart from other render failures.
#[derive(Debug)]
pub(crate) struct RaisedByTemplate(pub(crate) String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// The error the bounded output buffer fails with.
#[derive(Debug)]
pub(crate) struct OutputTooLarge;

impl std::fmt::Display for OutputTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rendered prompt too large")
    }
}

impl std::error::Error for OutputTooLarge {}

impl TemplateError {
    /// Converts a minijinja error raised while compiling the template.
    pub(crate) fn from_compile(err: &minijinja::Error) -> Self {
        TemplateError::Syntax {
            line: err.line(),
            detail: describe(err),
        }
    }

    /// Converts a minijinja error raised while rendering.
    pub(crate) fn from_render(err: &minijinja::Error) -> Self {
        use minijinja::ErrorKind;
        let line = err.line();
        // Walk the source chain: `raise_exception` and the bounded writer tag their errors.
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
        while let Some(s) = src {
            if let Some(raised) = s.downcast_ref::<RaisedByTemplate>() {
                return TemplateError::Raised {
                    line,
                    message: raised.0.clone(),
                };
            }
            src = s.source();
        }
        match err.kind() {
            // The only writer that fails is the bounded output buffer.
            ErrorKind::WriteFailure => TemplateError::LimitExceeded {
                limit: "output size",
                line,
            },
            ErrorKind::OutOfFuel => TemplateError::LimitExceeded {
                limit: "instruction (fuel)",
                line,
            },
            ErrorKind::InvalidOperation
                if err
                    .detail()
                    .is_some_and(|d| d.contains("recursion limit exceeded")) =>
            {
                TemplateError::LimitExceeded {
                    limit: "recursion",
                    line,
                }
            }
            ErrorKind::SyntaxError => TemplateError::Syntax {
                line,
                detail: describe(err),
            },
            _ => TemplateError::Render {
                line,
                detail: describe(err),
            },
        }
    }
}

/// "kind: detail" without minijinja's " (in template:line)" suffix (the line is reported
/// separately).
fn describe(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}
