//! What a sample must print on the serial console, and how it is checked.

use std::borrow::Cow;
use std::io;
use std::path::Path;

/// Arguments put into every case's config (after the implicit `argv[0]`).
pub const ARGS: [&str; 2] = ["one", "two words"];

/// Value of the `GREETING` environment variable in every case's config.
pub const GREETING: &str = "hello nanos";

/// Last line every sample prints.
pub const DONE_MARKER: &str = "HELLO-DONE";

/// Checks that the file at `path` holds `expected` (one trailing newline allowed); returns
/// the problem, if any. `what` precedes the path in messages ("host file " or nothing), and
/// `missing` is the message for a file that is not there.
pub fn check_file(path: &Path, what: &str, missing: String, expected: &str) -> Option<String> {
    match std::fs::read(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Some(missing),
        Err(err) => Some(format!("cannot read {what}{}: {err}", path.display())),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let body = text.strip_suffix('\n').unwrap_or(&text);
            (body != expected).then(|| {
                format!(
                    "{what}{} contains {text:?}, expected {expected:?}",
                    path.display()
                )
            })
        }
    }
}

/// The lines the guest must print for the case `case` running `program`.
///
/// `argv[0]` is the program name as given to `nanoimg build` (ops prepends
/// the program to `Args`).
pub fn expected_lines(program: &str, case: &str) -> Vec<String> {
    let mut lines = vec![format!("argv[0]={program}")];
    lines.extend(
        ARGS.iter()
            .enumerate()
            .map(|(i, arg)| format!("argv[{}]={arg}", i + 1)),
    );
    lines.push(format!("env:GREETING={GREETING}"));
    lines.push(format!("env:E2E_CASE={case}"));
    lines.push(DONE_MARKER.to_owned());
    lines
}

/// The escape character that starts an ANSI/VT100 control sequence.
const ESC: char = '\u{1b}';

/// `line` without ANSI escape sequences: CSI (`ESC [ ... final`, e.g. the
/// colours and cursor moves OVMF prints), OSC (`ESC ] ... BEL` or
/// `ESC ] ... ESC \`), character set selections (`ESC ( B`) and other
/// two-character escapes (`ESC c`).
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
            // Parameter and intermediate bytes up to a final byte in @..=~.
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

/// Console lines without ANSI escape sequences, serial line endings (`\r\n`)
/// and trailing blanks.
fn console_lines(console: &str) -> impl Iterator<Item = Cow<'_, str>> {
    console.lines().map(|line| match strip_ansi(line) {
        Cow::Borrowed(line) => Cow::Borrowed(line.trim_end()),
        Cow::Owned(line) => Cow::Owned(line.trim_end().to_owned()),
    })
}

/// The expected lines that do not appear as a whole line of `console`
/// (ignoring ANSI escape sequences), in the order given.
pub fn missing_lines<'a>(console: &str, expected: &'a [String]) -> Vec<&'a str> {
    expected
        .iter()
        .map(String::as_str)
        .filter(|want| !console_lines(console).any(|line| line == *want))
        .collect()
}

/// The last `n` lines of the console output, without ANSI escape sequences.
pub fn tail(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<Cow<'_, str>> = console_lines(console).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|line| line.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lines_cover_args_env_and_marker() {
        assert_eq!(
            expected_lines("hello_static", "static-c"),
            [
                "argv[0]=hello_static",
                "argv[1]=one",
                "argv[2]=two words",
                "env:GREETING=hello nanos",
                "env:E2E_CASE=static-c",
                "HELLO-DONE",
            ]
        );
    }

    #[test]
    fn whole_lines_match_with_crlf() {
        let expected = expected_lines("p", "c");
        let console = "en1: assigned 10.0.2.15\r\nargv[0]=p\r\nargv[1]=one\r\n\
                       argv[2]=two words\r\nenv:E2E_CASE=c\r\nenv:GREETING=hello nanos\r\n\
                       HELLO-DONE\r\n";
        assert!(missing_lines(console, &expected).is_empty());
    }

    #[test]
    fn partial_lines_do_not_match() {
        let expected = expected_lines("p", "c");
        let console = "argv[0]=p\nargv[1]=one\nargv[2]=two\nxHELLO-DONE\n";
        assert_eq!(
            missing_lines(console, &expected),
            [
                "argv[2]=two words",
                "env:GREETING=hello nanos",
                "env:E2E_CASE=c",
                "HELLO-DONE",
            ]
        );
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        assert_eq!(strip_ansi("plain"), "plain");
        assert!(matches!(strip_ansi("plain"), Cow::Borrowed(_)));
        assert_eq!(
            strip_ansi("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading"),
            "BdsDxe: loading"
        );
        assert_eq!(
            strip_ansi("\x1b[0m\x1b[37m\x1b[40mHELLO-DONE\x1b[0m"),
            "HELLO-DONE"
        );
        assert_eq!(strip_ansi("\x1b]0;title\x07x"), "x");
        assert_eq!(strip_ansi("\x1b]0;title\x1b\\x"), "x");
        assert_eq!(strip_ansi("\x1b(Bx\x1bc"), "x");
        // A sequence cut off at the end of the line is dropped.
        assert_eq!(strip_ansi("x\x1b[01;0"), "x");
        assert_eq!(strip_ansi("x\x1b"), "x");
    }

    #[test]
    fn lines_match_around_ovmf_escape_codes() {
        // What OVMF and then Nanos print on the serial console.
        let console = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001 \
                       \"UEFI QEMU QEMU HARDDISK \" from PciRoot(0x0)\r\n\
                       BdsDxe: starting Boot0001\r\n\
                       \x1b[0m\x1b[37m\x1b[40margv[0]=p\r\n\
                       argv[1]=one\x1b[0m\r\nargv[2]=two words\n\
                       env:GREETING=hello nanos\nenv:E2E_CASE=c\n\x1b[2JHELLO-DONE \x1b[0m\r\n";
        assert!(missing_lines(console, &expected_lines("p", "c")).is_empty());
        assert_eq!(
            missing_lines(console, &["BdsDxe: starting Boot0001".to_owned()]),
            Vec::<&str>::new()
        );
        assert_eq!(tail(console, 1), ["HELLO-DONE"]);
    }

    #[test]
    fn escape_codes_do_not_make_partial_lines_match() {
        let console = "\x1b[0mxHELLO-DONE\x1b[0m\n";
        assert_eq!(
            missing_lines(console, &["HELLO-DONE".to_owned()]),
            ["HELLO-DONE"]
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\r\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a\n", 40), ["a"]);
        assert!(tail("", 40).is_empty());
    }
}
