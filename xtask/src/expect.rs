//! Matching expected lines against output: whole lines, trailing white space and ANSI
//! escapes (OVMF's, the kernel's) ignored, `*` in an expected line matching any text.

use std::borrow::Cow;

const ESC: char = '\u{1b}';

/// `line` without ANSI escape sequences (CSI, OSC, charset selection, two-byte ones).
pub fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains(ESC) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ESC {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == ESC {
                        chars.next_if_eq(&'\\');
                        break;
                    }
                }
            }
            Some('(' | ')' | '*' | '+') => {
                chars.next();
            }
            Some(_) | None => {}
        }
    }
    Cow::Owned(out)
}

fn clean_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(|line| strip_ansi(line).trim_end().to_owned())
}

/// Whether `line` matches `pattern`, where `*` matches any text.
pub fn glob(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The first line of `text` matching each of `expected`: `Err` for one that none matches.
pub fn find_lines(text: &str, expected: &[String]) -> Vec<Result<String, String>> {
    expected
        .iter()
        .map(|want| {
            clean_lines(text)
                .find(|line| glob(want, line))
                .ok_or_else(|| want.clone())
        })
        .collect()
}

/// The expected lines that `text` does not show.
pub fn missing_lines(text: &str, expected: &[String]) -> Vec<String> {
    find_lines(text, expected)
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// The last `n` lines of `text`, without ANSI escape sequences.
pub fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = clean_lines(text).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whole_lines_match_around_escape_codes() {
        let console = "\x1b[2J\x1b[01;01HBdsDxe: starting Boot0001\r\n\
                       \x1b[0m\x1b[37m\x1b[40margv[0]=p\r\nargv[1]=one\x1b[0m\r\n\
                       \x1b[0mxHELLO-DONE\x1b[0m\n\x1b]0;t\x07x \r\n";
        let want = strings(&["BdsDxe: starting Boot0001", "argv[0]=p", "argv[1]=one", "x"]);
        assert!(missing_lines(console, &want).is_empty());
        assert_eq!(
            missing_lines(console, &strings(&["HELLO-DONE", "argv"])),
            ["HELLO-DONE", "argv"]
        );
        assert_eq!(tail(console, 1), ["x"]);
        assert_eq!(strip_ansi("\x1b(Bx\x1bc\x1b[01;0"), "x");
    }

    #[test]
    fn stars_match_any_text() {
        assert!(glob("a*c", "abbc") && glob("a*", "a") && glob("*", ""));
        assert!(glob(
            "nanoimg: packed * files (*)",
            "nanoimg: packed 9 files (1 MiB)"
        ));
        assert!(!glob("a*c", "abcd") && !glob("ab", "abc") && !glob("a*bb", "ab"));
    }
}
