//! Diagnostics (warnings and errors) with file, line, column and the token they refer to.

use std::fmt;

/// One message about the config file.
///
/// Displays as `FILE:LINE:COLUMN: MESSAGE (near "TOKEN")`. Line 0 means "the file as a whole"
/// (shown as `FILE: MESSAGE`); an empty file name or token is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub token: String,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about the whole file (no position).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            token: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.column)?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)?;
        if !self.token.is_empty() {
            write!(f, " (near \"{}\")", self.token.escape_debug())?;
        }
        Ok(())
    }
}

/// The config was rejected; one diagnostic per problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

fn lines(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let d = Diagnostic {
            file: "sockd.conf".into(),
            line: 7,
            column: 12,
            token: "htp".into(),
            message: "expected a port number after 'port ='".into(),
        };
        assert_eq!(
            d.to_string(),
            "sockd.conf:7:12: expected a port number after 'port =' (near \"htp\")"
        );
        let w = Diagnostic::whole_file("f.conf", "no socks methods");
        assert_eq!(w.to_string(), "f.conf: no socks methods");
        let e = ConfigError {
            diagnostics: vec![d.clone(), w],
        };
        assert_eq!(e.to_string().lines().count(), 2);
    }
}
