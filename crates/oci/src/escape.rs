//! Text from an image, made safe to print in one line.

use std::fmt;

/// Most characters of image text shown in a message; longer text is cut with `…`.
pub const MAX_SHOWN: usize = 200;

/// `text` as [`Escaped`] shows it: control characters (`\n`, `\t`, `\x1b`, …), backslashes
/// and the invisible Unicode formatting characters (bidirectional overrides, zero-width
/// characters, line separators) written as escapes, and cut to [`MAX_SHOWN`] characters
/// with `…`. Every value taken from an image (member names, references, annotations,
/// platforms, media types, link targets) goes through it before it reaches an
/// [`crate::OciError`].
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// Shows a `&str` from an image escaped and cut, as [`escape`] describes.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, MAX_SHOWN)
    }
}

/// Writes `text` escaped, at most `max` characters of output (escapes are never split),
/// then `…` if something was left out.
fn write_escaped(out: &mut dyn fmt::Write, text: &str, max: usize) -> fmt::Result {
    let mut shown = 0;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        push_escaped(&mut piece, c);
        let n = piece.chars().count();
        if shown + n > max {
            return out.write_char('…');
        }
        out.write_str(&piece)?;
        shown += n;
    }
    Ok(())
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\0' => out.push_str("\\0"),
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || invisible(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Formatting characters that change how a line reads without showing themselves.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00ad | 0x061c | 0x180e | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff)
}

/// A host path whose names came from an image (a file being written into the root):
/// escaped like [`escape`], and if long, cut in the middle so that both the folder it is
/// under and the name's end show.
pub(crate) fn escape_path(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let full = {
        let mut s = String::new();
        let _ = write_escaped(&mut s, &text, usize::MAX);
        s
    };
    let n = full.chars().count();
    if n <= 2 * MAX_SHOWN {
        return full;
    }
    let head: String = full.chars().take(MAX_SHOWN).collect();
    let tail: String = full.chars().skip(n - MAX_SHOWN).collect();
    format!("{head}…{tail}")
}

/// Bytes from an image (a tar member's name) shown as [`escape`] shows text, invalid UTF-8
/// replaced.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_long_text_cut() {
        assert_eq!(
            escape("evil\n\x1b[31mnanoimg: all good\t\\ \u{202e}x\u{85}"),
            "evil\\n\\x1b[31mnanoimg: all good\\t\\\\ \\u{202e}x\\u{85}"
        );
        assert_eq!(escape("usr/lib/libc.so.6"), "usr/lib/libc.so.6");
        assert_eq!(escape("café"), "café");
        let long = "a".repeat(1000);
        let cut = escape(&long);
        assert_eq!(cut.chars().count(), MAX_SHOWN + 1);
        assert!(cut.ends_with('…'));
        // An escape is never split by the cut.
        let s = format!("{}\x1b", "a".repeat(MAX_SHOWN - 2));
        assert_eq!(escape(&s), format!("{}…", "a".repeat(MAX_SHOWN - 2)));
        assert_eq!(escape(&"a".repeat(MAX_SHOWN)), "a".repeat(MAX_SHOWN));
        let p = format!("/cache/tmp/{}end\n", "d/".repeat(500));
        let e = escape_path(std::path::Path::new(&p));
        assert!(
            e.starts_with("/cache/tmp/d/") && e.ends_with("d/end\\n"),
            "{e}"
        );
        assert_eq!(e.chars().count(), 2 * MAX_SHOWN + 1);
    }
}
