//! e2e sample for `cargo xtask e2e`: the same output as hello_static.c.
//!
//! Built twice: "static-rust" uses `rustc -O -C target-feature=+crt-static`
//! (a statically linked glibc Rust binary); "dynamic-rust" uses plain
//! `rustc -O`, so it needs ld-linux, libc and libgcc_s packed into the image.
//!
//! Output format, one item per line:
//!   argv[<i>]=<argument>
//!   env:<KEY>=<VALUE>
//!   HELLO-DONE

use std::io::{self, Write};

fn main() -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (i, arg) in std::env::args_os().enumerate() {
        writeln!(out, "argv[{}]={}", i, arg.to_string_lossy())?;
    }
    for (key, value) in std::env::vars_os() {
        writeln!(
            out,
            "env:{}={}",
            key.to_string_lossy(),
            value.to_string_lossy()
        )?;
    }
    writeln!(out, "HELLO-DONE")?;
    out.flush()
}
