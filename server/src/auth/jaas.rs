//! JAAS login configuration files, as ZooKeeper operators write them for
//! `-Djava.security.auth.login.config=FILE`:
//!
//! ```text
//! Server {
//!     org.apache.zookeeper.server.auth.DigestLoginModule required
//!     user_super="adminsecret"
//!     user_bob="bobsecret";
//! };
//! ```
//!
//! Sections of login modules, each a class, a control flag and
//! `key=value` options ending in `;`; `//` and `/* */` comments. A file
//! that does not parse is an error naming the line and column.

use std::fmt;

/// One `Name { ... };` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub modules: Vec<LoginModule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginModule {
    pub class: String,
    pub flag: String,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JaasError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for JaasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

const FLAGS: [&str; 4] = ["required", "requisite", "sufficient", "optional"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semicolon,
    Equals,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl Lexer<'_> {
    fn error(&self, message: impl Into<String>) -> JaasError {
        JaasError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) -> Result<(), JaasError> {
        loop {
            match self.chars.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') => {
                    let mut ahead = self.chars.clone();
                    ahead.next();
                    match ahead.next() {
                        Some('/') => while self.bump().is_some_and(|c| c != '\n') {},
                        Some('*') => {
                            self.bump();
                            self.bump();
                            let mut star = false;
                            loop {
                                match self.bump() {
                                    Some('/') if star => break,
                                    Some(c) => star = c == '*',
                                    None => return Err(self.error("unterminated comment")),
                                }
                            }
                        }
                        _ => return Ok(()),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<Option<(Token, usize, usize)>, JaasError> {
        self.skip_blanks()?;
        let (line, column) = (self.line, self.column);
        let Some(&c) = self.chars.peek() else {
            return Ok(None);
        };
        let token = match c {
            '{' | '}' | ';' | '=' => {
                self.bump();
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ';' => Token::Semicolon,
                    _ => Token::Equals,
                }
            }
            '"' => {
                self.bump();
                let mut s = String::new();
                loop {
                    match self.bump() {
                        Some('"') => break,
                        Some('\\') => match self.bump() {
                            Some(c) => s.push(c),
                            None => return Err(self.error("unterminated quoted string")),
                        },
                        Some(c) => s.push(c),
                        None => return Err(self.error("unterminated quoted string")),
                    }
                }
                Token::Quoted(s)
            }
            c if is_word(c) => {
                let mut s = String::new();
                while let Some(&c) = self.chars.peek().filter(|c| is_word(**c)) {
                    s.push(c);
                    self.bump();
                }
                Token::Word(s)
            }
            other => return Err(self.error(format!("unexpected character {other:?}"))),
        };
        Ok(Some((token, line, column)))
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '$' | '-' | '/' | ':' | '@' | '*')
}

/// Parses a whole file.
pub fn parse(text: &str) -> Result<Vec<Section>, JaasError> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        line: 1,
        column: 1,
    };
    let mut sections = Vec::new();
    let at = |line, column, message: String| JaasError {
        line,
        column,
        message,
    };
    let expect = |lexer: &mut Lexer, what: &str| -> Result<(Token, usize, usize), JaasError> {
        lexer
            .next()?
            .ok_or_else(|| lexer.error(format!("end of file where {what} was expected")))
    };
    while let Some((token, line, column)) = lexer.next()? {
        let Token::Word(name) = token else {
            return Err(at(line, column, "a section name was expected".into()));
        };
        match expect(&mut lexer, "{")? {
            (Token::Open, ..) => {}
            (_, l, c) => return Err(at(l, c, format!("{{ was expected after {name}"))),
        }
        let mut modules = Vec::new();
        loop {
            let class = match expect(&mut lexer, "a login module or }")? {
                (Token::Close, ..) => break,
                (Token::Word(class), ..) => class,
                (_, l, c) => return Err(at(l, c, "a login module class was expected".into())),
            };
            let flag = match expect(&mut lexer, "a control flag")? {
                (Token::Word(flag), ..) if FLAGS.contains(&flag.to_ascii_lowercase().as_str()) => {
                    flag.to_ascii_lowercase()
                }
                (_, l, c) => {
                    return Err(at(
                        l,
                        c,
                        format!(
                            "{class}: the control flag must be one of {}",
                            FLAGS.join(", ")
                        ),
                    ))
                }
            };
            let mut options = Vec::new();
            loop {
                let key = match expect(&mut lexer, "an option or ;")? {
                    (Token::Semicolon, ..) => break,
                    (Token::Word(key), ..) => key,
                    (_, l, c) => return Err(at(l, c, "an option name was expected".into())),
                };
                match expect(&mut lexer, "=")? {
                    (Token::Equals, ..) => {}
                    (_, l, c) => return Err(at(l, c, format!("= was expected after {key}"))),
                }
                let value = match expect(&mut lexer, "a value")? {
                    (Token::Quoted(v) | Token::Word(v), ..) => v,
                    (_, l, c) => return Err(at(l, c, format!("a value was expected for {key}"))),
                };
                options.push((key, value));
            }
            modules.push(LoginModule {
                class,
                flag,
                options,
            });
        }
        match expect(&mut lexer, ";")? {
            (Token::Semicolon, ..) => {}
            (_, l, c) => return Err(at(l, c, format!("; was expected after {name}'s }}"))),
        }
        sections.push(Section { name, modules });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option<'a>(m: &'a LoginModule, key: &str) -> Option<&'a str> {
        m.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn reads_zookeepers_digest_server_section_and_comments() {
        let text = r#"
            // ZooKeeper's own example
            Server {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                user_super="adminsecret" /* the super user */
                user_bob="bob\"secret";
            };
            Client { org.apache.zookeeper.server.auth.DigestLoginModule required
              username="bob" password="bobsecret"; };
        "#;
        let sections = parse(text).expect("parses");
        assert_eq!(sections.len(), 2);
        let server = &sections[0];
        assert_eq!(server.name, "Server");
        assert_eq!(server.modules[0].flag, "required");
        assert_eq!(
            option(&server.modules[0], "user_super"),
            Some("adminsecret")
        );
        assert_eq!(option(&server.modules[0], "user_bob"), Some("bob\"secret"));
        assert_eq!(option(&sections[1].modules[0], "username"), Some("bob"));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let text = "Server {\n  Module required\n  user_a=\"x\"\n};";
        let e = parse(text).expect_err("no ; after the options");
        assert_eq!((e.line, e.column), (4, 1), "{e}");
        let e = parse("Server {\n  Module mandatory;\n};").expect_err("bad flag");
        assert_eq!((e.line, e.column), (2, 10), "{e}");
        assert!(parse("Server { M required a=\"open").is_err());
        assert!(parse("Server { M required; } ").is_err());
        assert_eq!(parse("/* nothing */").expect("empty"), Vec::new());
    }
}
