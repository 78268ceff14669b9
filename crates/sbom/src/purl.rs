//! Package URL pieces (<https://github.com/package-url/purl-spec>).

/// `s` percent-encoded for a PURL name, version or qualifier value: everything but the
/// unreserved characters (`A-Z a-z 0-9 . - _ ~`) as `%XX`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_reserved() {
        assert_eq!(super::encode("2.36-9+deb12u4"), "2.36-9%2Bdeb12u4");
        assert_eq!(super::encode("1:2.3"), "1%3A2.3");
    }
}
