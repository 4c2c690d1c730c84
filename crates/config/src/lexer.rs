//! Character scanner for sockd.conf: positions, blanks, `#` comments, `\`-newline continuations.
//!
//! Dante's lexer is context-dependent (48 start conditions): `::1` is an address after `from:`
//! but `:` ends a keyword elsewhere. So there is no fixed token stream here; the parser asks the
//! scanner for the token shape it expects next (keyword, list item, address, number).

/// A slice of the source with the position of its first character (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok<'a> {
    pub text: &'a str,
    pub line: u32,
    pub col: u32,
}

/// Cheap to clone: the parser clones it to look ahead.
#[derive(Debug, Clone)]
pub(crate) struct Scanner<'a> {
    src: &'a str,
    off: usize,
    line: u32,
    col: u32,
}

/// Characters of keywords and fixed vocabulary (`timeout.io.tcp`, `same-same`, `socks_v4`).
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c')
}

impl<'a> Scanner<'a> {
    pub fn new(src: &'a str) -> Scanner<'a> {
        Scanner {
            src,
            off: 0,
            line: 1,
            col: 1,
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.off..).unwrap_or("")
    }

    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.off += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// An empty token at the current position.
    pub fn here(&self) -> Tok<'a> {
        Tok {
            text: "",
            line: self.line,
            col: self.col,
        }
    }

    /// Skips blanks, comments and escaped newlines, but not a plain newline: newlines end lists.
    pub fn skip_blanks(&mut self) {
        loop {
            let rest = self.rest();
            match self.peek() {
                Some(c) if is_blank(c) => {
                    self.bump();
                }
                Some('\\') if rest.starts_with("\\\n") || rest.starts_with("\\\r\n") => {
                    while self.bump() != Some('\n') {}
                }
                // Dante: a comment starts at a `#` that begins a token and runs to end of line.
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// Skips blanks, comments and newlines.
    pub fn skip_space(&mut self) {
        loop {
            self.skip_blanks();
            if self.peek() == Some('\n') {
                self.bump();
            } else {
                return;
            }
        }
    }

    pub fn at_eof(&mut self) -> bool {
        self.skip_blanks();
        self.peek().is_none()
    }

    /// True at end of line or file (after blanks and comments).
    #[cfg(test)]
    pub fn at_eol(&mut self) -> bool {
        self.skip_blanks();
        matches!(self.peek(), None | Some('\n'))
    }

    /// True at end of line, end of file or a `}`: where list values end.
    pub fn at_value_end(&mut self) -> bool {
        self.skip_blanks();
        matches!(self.peek(), None | Some('\n') | Some('}'))
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> Tok<'a> {
        let start = self.here();
        let from = self.off;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.bump();
        }
        Tok {
            text: self.src.get(from..self.off).unwrap_or(""),
            ..start
        }
    }

    /// A keyword or vocabulary word; empty if the next character cannot start one.
    pub fn ident(&mut self) -> Tok<'a> {
        self.skip_blanks();
        self.take_while(is_ident_char)
    }

    /// A run of non-blank characters not in `stops`; empty if the next character is a stop.
    pub fn word(&mut self, stops: &[char]) -> Tok<'a> {
        self.skip_blanks();
        self.take_while(|c| !c.is_whitespace() && !stops.contains(&c))
    }

    /// Alphanumeric run: numbers in Dante's forms (`80`, `0x50`, `010`) and their typos.
    pub fn number(&mut self) -> Tok<'a> {
        self.skip_blanks();
        self.take_while(|c| c.is_ascii_alphanumeric())
    }

    /// Consumes `c` (after blanks) if it is next.
    pub fn eat(&mut self, c: char) -> bool {
        self.skip_blanks();
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Consumes `s` (after blanks) if it comes next.
    pub fn eat_str(&mut self, s: &str) -> bool {
        self.skip_blanks();
        if self.rest().starts_with(s) {
            for _ in s.chars() {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    /// The next thing, for error messages: a word, or one character (empty at end of line or
    /// file). A `}` is reported but not consumed.
    pub fn next_token(&mut self) -> Tok<'a> {
        self.skip_blanks();
        let w = self.clone().word(&['{', '}', ':']);
        if !w.text.is_empty() {
            return self.word(&['{', '}', ':']);
        }
        let start = self.here();
        let from = self.off;
        // Structure is left in place so the caller's recovery still sees it.
        if self.peek() == Some('}') {
            return Tok { text: "}", ..start };
        }
        if self.peek() == Some('\n') {
            return Tok { text: "", ..start };
        }
        self.bump();
        Tok {
            text: self.src.get(from..self.off).unwrap_or(""),
            ..start
        }
    }

    /// The rest of the line, trimmed, up to a `}` that ends it (which is left for the parser):
    /// a value that is free text (`libwrap: spawn (echo %a) &`), as Dante reads it.
    pub fn rest_of_line(&mut self) -> Tok<'a> {
        while matches!(self.peek(), Some(c) if is_blank(c)) {
            self.bump();
        }
        let start = self.here();
        let from = self.off;
        let line = self.rest().split('\n').next().unwrap_or("");
        let mut text = line.trim_end();
        if let Some(t) = text.strip_suffix('}') {
            text = t.trim_end();
        }
        for _ in text.chars() {
            self.bump();
        }
        Tok {
            text: self.src.get(from..self.off).unwrap_or(""),
            ..start
        }
    }

    /// Skips to the end of the line (not consuming the newline).
    pub fn skip_line(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    /// Skips to the end of the line or to a `}` (consuming neither).
    pub fn skip_value(&mut self) {
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some('\n') | Some('}') => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// Skips a `{ ... }` block if one starts next (possibly after newlines), else the line.
    pub fn skip_block(&mut self) {
        self.skip_blanks();
        if !self.rest_of_line_has('{') {
            self.skip_line();
            return;
        }
        while let Some(c) = self.bump() {
            if c == '{' {
                break;
            }
        }
        loop {
            self.skip_blanks();
            match self.bump() {
                None | Some('}') => return,
                _ => {}
            }
        }
    }

    fn rest_of_line_has(&self, c: char) -> bool {
        let line = self.rest().split('\n').next().unwrap_or("");
        let code = line.split(" #").next().unwrap_or(line);
        code.contains(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_comments_and_continuations() {
        let mut s = Scanner::new("a # c\n  b\\\n c");
        let a = s.ident();
        assert_eq!((a.text, a.line, a.col), ("a", 1, 1));
        assert!(s.at_eol());
        s.skip_space();
        let b = s.ident();
        assert_eq!((b.text, b.line, b.col), ("b", 2, 3));
        // An escaped newline continues the line.
        assert!(!s.at_eol());
        let c = s.ident();
        assert_eq!((c.text, c.line, c.col), ("c", 3, 2));
        assert!(s.at_eof());
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        let mut s = Scanner::new("root#x y");
        assert_eq!(s.word(&[]).text, "root#x");
        assert_eq!(s.word(&[]).text, "y");
    }

    #[test]
    fn skip_block_skips_braces() {
        let mut s = Scanner::new("route {\n from: 0/0\n} x");
        s.ident();
        s.skip_block();
        assert_eq!(s.ident().text, "x");
    }
}
