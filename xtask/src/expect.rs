//! What a sample must print on the serial console, and how it is checked.

/// Arguments put into every case's config (after the implicit `argv[0]`).
pub const ARGS: [&str; 2] = ["one", "two words"];

/// Value of the `GREETING` environment variable in every case's config.
pub const GREETING: &str = "hello nanos";

/// Last line every sample prints.
pub const DONE_MARKER: &str = "HELLO-DONE";

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

/// Console lines with serial line endings (`\r\n`) and trailing blanks
/// removed.
fn console_lines(console: &str) -> impl Iterator<Item = &str> {
    console.lines().map(|line| line.trim_end())
}

/// The expected lines that do not appear as a whole line of `console`,
/// in the order given.
pub fn missing_lines<'a>(console: &str, expected: &'a [String]) -> Vec<&'a str> {
    expected
        .iter()
        .map(String::as_str)
        .filter(|want| !console_lines(console).any(|line| line == *want))
        .collect()
}

/// The last `n` lines of the console output.
pub fn tail(console: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = console_lines(console).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].to_vec()
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
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\r\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a\n", 40), ["a"]);
        assert!(tail("", 40).is_empty());
    }
}
