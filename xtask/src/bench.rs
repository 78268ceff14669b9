//! `cargo xtask bench`: how fast is `nanoimg build` compared with simply
//! copying the same bytes?
//!
//! Steps: build `nanoimg` in release mode, then set up a work directory (a
//! temporary one, or `--keep DIR`) holding
//!
//! * `hello`, a static C program (`cc -static -O2` of the e2e sample
//!   `hello_static.c`);
//! * `payload/`: one 512 MiB file of pseudo-random bytes (`big.bin`) and
//!   `--small-files` files of 4 KiB spread over 100 folders
//!   (`small/dNN/fNNNNNNN.bin`), all from a fixed-seed SplitMix64 stream, so
//!   every machine packs the same bytes;
//! * `config.json`: `{"Program": "hello", "Dirs": ["payload"]}` (nanoimg
//!   resolves `Dirs` against its working directory, the work directory);
//! * `kernel/`: a fake Nanos release folder — `kernel.img` (1 MiB of
//!   pseudo-random bytes) and a `boot.img` that only has to pass nanoimg's
//!   checks (a stage2 region record and the MBR signature) — so no real
//!   kernel is needed.
//!
//! Then, `--runs` times, interleaved (the order alternates between runs):
//!
//! * **copy** (the baseline, in-process): list the program and the payload
//!   files (sorted walk, included in the time), read them in that order and
//!   append them to one output file through a single 1 MiB buffer, then
//!   `fsync` it — the equivalent of `cat files > out; sync`;
//! * **nanoimg**: `nanoimg build hello -c config.json --kernel-dir kernel -o
//!   bench.img` as a subprocess in the work directory; the time runs from
//!   the spawn until the child has been reaped by `wait4` (which also gives
//!   its peak RSS and CPU time) and the runner has `fsync`ed the image. nanoimg already
//!   syncs its output before renaming it into place, so that last `fsync` is
//!   cheap; it is there so both sides are measured the same way: "output
//!   written and on disk".
//!
//! The payload is flushed to disk with `sync` once after it is generated,
//! one copy is run as a warm-up, and outputs are removed before each
//! measurement (all untimed). Caches
//! are not dropped (that needs root): the payload was just written or read,
//! so both sides read it from the page cache in every run — the numbers
//! compare CPU and write work, not cold-disk reads. On a tmpfs work directory `fsync` is
//! a no-op. Other load on the machine (another build, a fuzzer) shows up in
//! the numbers; the load average is printed at the start for that reason.
//!
//! The report gives the median, min and max of each side, their ratio, the
//! payload size and nanoimg's peak RSS, ending with one line such as
//! `bench: ratio 1.83 (nanoimg 1.23 s, copy 0.67 s, median of 5), peak
//! memory 7.9 MiB`. It is a measurement, not a test: it exits 0 however slow
//! the machine is (1 if something broke, 2 if `cc` is missing).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::e2e;
use crate::expect;
use crate::fixtures;
use crate::prereq::{self, MissingPrerequisites};

const MIB: u64 = 1024 * 1024;

/// Size of the one large payload file.
pub const BIG_FILE_SIZE: u64 = 512 * MIB;
/// Size of each small payload file.
pub const SMALL_FILE_SIZE: usize = 4096;
/// How many folders the small files are spread over.
pub const SMALL_DIRS: usize = 100;
/// Write and copy buffer size.
const CHUNK: usize = MIB as usize;
/// Size of the fake `kernel.img`.
const KERNEL_SIZE: usize = MIB as usize;
/// Stage2 length of the fake `boot.img`, in 512-byte sectors.
const STAGE2_SECTORS: usize = 94;
/// Seed of the payload stream ("nanoimg!").
const SEED: u64 = 0x6e61_6e6f_696d_6721;

/// The program's file name, `Program` in the config and `argv[0]`.
const PROGRAM: &str = "hello";
/// The e2e runner's static sample (written out with the other sample sources it includes).
const PROGRAM_SOURCE_FILE: &str = "hello_static.c";
const PAYLOAD_DIR: &str = "payload";
const KERNEL_DIR: &str = "kernel";
const CONFIG_FILE: &str = "config.json";
/// Records what the payload folder holds, so `--keep DIR` can reuse it.
const STAMP_FILE: &str = "payload.stamp";
const IMAGE_FILE: &str = "bench.img";
const COPY_FILE: &str = "bench.copy";
const NANOIMG_LOG: &str = "nanoimg.log";
/// Log lines shown when nanoimg fails.
const LOG_TAIL_LINES: usize = 30;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How many times to run the copy and nanoimg (interleaved)
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// Work in DIR and keep it (the payload is reused by a later run with
    /// the same --small-files) instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// Number of 4 KiB files in the payload, besides the 512 MiB one
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub small_files: u32,

    /// Use this nanoimg binary instead of building one with
    /// `cargo build --release -p nanoimg`
    #[arg(long, value_name = "PATH")]
    pub nanoimg_bin: Option<PathBuf>,

    /// Build in this disk format (`nanoimg build --format`) instead of raw
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Runs the benchmark and prints the report. Missing `cc` comes back as an
/// error carrying [`MissingPrerequisites`].
pub fn run(args: &BenchArgs) -> Result<()> {
    let cc = prereq::find_on_path("cc").ok_or_else(|| {
        MissingPrerequisites::single(
            "`cc` not found on PATH — install a C compiler with static glibc \
             (Debian/Ubuntu: apt-get install gcc libc6-dev)"
                .to_owned(),
        )
    })?;
    let nanoimg_override = args
        .nanoimg_bin
        .as_deref()
        .map(e2e::resolve_nanoimg_bin)
        .transpose()?;
    let (work_dir, _temp) = work_dir(args.keep.as_deref())?;
    println!("bench: work directory {}", work_dir.display());
    if let Some(load) = load_average() {
        println!("bench: load average {load} (other load on the machine shows in the timings)");
    }

    let program = compile_program(&cc, &work_dir)?;
    write_fake_release(&work_dir.join(KERNEL_DIR))?;
    let config = work_dir.join(CONFIG_FILE);
    let config_json = json!({ "Program": PROGRAM, "Dirs": [PAYLOAD_DIR] });
    fs::write(&config, serde_json::to_vec_pretty(&config_json)?)
        .with_context(|| format!("writing {}", config.display()))?;

    let nanoimg = match nanoimg_override {
        Some(path) => path,
        None => e2e::build_nanoimg("bench")?,
    };
    println!("bench: using {}", nanoimg.display());

    let payload = work_dir.join(PAYLOAD_DIR);
    let small_files = args.small_files as usize;
    prepare_payload(&work_dir, &payload, small_files)?;
    let inputs = inputs(&program, &payload)?;
    let bench = Bench {
        payload_bytes: total_size(&inputs)?,
        work_dir,
        nanoimg,
        program,
        payload,
        format: args.format.as_deref().filter(|f| *f != "raw"),
    };
    bench.describe(inputs.len(), small_files)?;
    bench.warm_up()?;
    let timings = bench.measure(args.runs)?;
    bench.report(&timings, small_files)?;
    if let Some(keep) = &args.keep {
        println!(
            "bench: payload, program and fake kernel kept in {}",
            keep.display()
        );
    }
    Ok(())
}

/// The work directory: `keep` (made if missing, absolute), else a temporary one, removed
/// when the second value is dropped.
fn work_dir(keep: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(keep) = keep {
        fs::create_dir_all(keep)
            .with_context(|| format!("creating --keep folder {}", keep.display()))?;
        let dir = keep
            .canonicalize()
            .with_context(|| format!("resolving --keep folder {}", keep.display()))?;
        return Ok((dir, None));
    }
    let temp = tempfile::Builder::new()
        .prefix("nanoimg-bench-")
        .tempdir()
        .context("creating the temporary work directory")?;
    Ok((temp.path().to_path_buf(), Some(temp)))
}

/// What the runs share: the work directory and what it holds.
struct Bench<'a> {
    work_dir: PathBuf,
    nanoimg: PathBuf,
    program: PathBuf,
    payload: PathBuf,
    /// The program and the payload files, in bytes.
    payload_bytes: u64,
    /// `--format`, unless it is raw.
    format: Option<&'a str>,
}

/// The timings and sizes of all the runs.
#[derive(Default)]
struct Timings {
    copy: Vec<f64>,
    raw: Vec<Measured>,
    formatted: Vec<Measured>,
    /// The raw build plus its conversion (`--format` only).
    route: Vec<f64>,
    image_size: u64,
    formatted_size: u64,
}

impl Bench<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    /// Prints the payload (`files` files) and what each side runs.
    fn describe(&self, files: usize, small_files: usize) -> Result<()> {
        println!(
            "bench: payload {} in {} files (program {}, 1 × {}, {} × {} in {} folders)",
            format_mib(self.payload_bytes),
            files,
            format_mib(file_size(&self.program)?),
            format_size(BIG_FILE_SIZE),
            small_files,
            format_size(SMALL_FILE_SIZE as u64),
            small_files.min(SMALL_DIRS)
        );
        let mut command = nanoimg_command(&self.nanoimg, &self.work_dir, None);
        command.args(["-o", IMAGE_FILE]);
        println!(
            "bench: nanoimg: (cd {} && {})",
            self.work_dir.display(),
            command_line(&command).join(" ")
        );
        println!(
            "bench: copy: read the {files} files in order through one 1 MiB buffer into {COPY_FILE}, then fsync"
        );
        if let Some(f) = self.format {
            let c = self.route_command(f)?;
            println!(
                "bench: --format {f}: `nanoimg build … --format {f}`, against the route a user would take otherwise: the raw build, then `{}` (timed until its output is synced)",
                command_line(&c).join(" ")
            );
        }
        Ok(())
    }

    /// The conversion of the raw image into `format` at `route.FORMAT`.
    fn route_command(&self, format: &str) -> Result<Command> {
        let routed = self.path(&format!("route.{format}"));
        route_command(format, &self.work_dir, &self.path(IMAGE_FILE), &routed)
    }

    /// One untimed copy.
    fn warm_up(&self) -> Result<()> {
        // The first large write after a quiet spell can be much slower than
        // the next ones (seen on VMs); nanoimg hides it behind its CPU work, a
        // plain copy cannot. One untimed copy first keeps the baseline honest.
        let (secs, _) = self.copy()?;
        println!("bench: warm-up copy {secs:.3} s (not counted)");
        remove_if_present(&self.path(COPY_FILE))
    }

    /// Copies the payload into [`COPY_FILE`] (removed first): the seconds and bytes.
    fn copy(&self) -> Result<(f64, u64)> {
        let copy_out = self.path(COPY_FILE);
        remove_if_present(&copy_out)?;
        let started = Instant::now();
        let copied = copy_baseline(&self.program, &self.payload, &copy_out)?;
        Ok((started.elapsed().as_secs_f64(), copied))
    }

    /// `runs` rounds of every side, printing each round.
    fn measure(&self, runs: u32) -> Result<Timings> {
        let mut t = Timings::default();
        for run in 0..runs {
            // Rotate the order so no side always runs on a cache or disk state another one
            // left behind.
            let sides = if self.format.is_some() { 3 } else { 2 };
            let mut line = Vec::new();
            for k in 0..sides {
                match (run as usize + k) % sides {
                    0 => line.push(self.copy_once(&mut t)?),
                    1 => self.raw_once(&mut t, &mut line)?,
                    _ => line.push(self.formatted_once(&mut t)?),
                }
            }
            println!("bench: run {}/{runs}: {}", run + 1, line.join(", "));
        }
        Ok(t)
    }

    /// One timed copy.
    fn copy_once(&self, t: &mut Timings) -> Result<String> {
        let (secs, copied) = self.copy()?;
        if copied != self.payload_bytes {
            bail!(
                "the copy wrote {copied} bytes, expected {}",
                self.payload_bytes
            );
        }
        t.copy.push(secs);
        remove_if_present(&self.path(COPY_FILE))?;
        Ok(format!("copy {secs:.3} s"))
    }

    /// One timed raw build, then (with `--format`) its timed conversion.
    fn raw_once(&self, t: &mut Timings, line: &mut Vec<String>) -> Result<()> {
        let image = self.path(IMAGE_FILE);
        remove_if_present(&image)?;
        let m = time_nanoimg(&self.nanoimg, &self.work_dir, &image, None)?;
        t.image_size = file_size(&image)?;
        line.push(format!("nanoimg raw {}", m.describe()));
        if let Some(f) = self.format {
            let routed = self.path(&format!("route.{f}"));
            remove_if_present(&routed)?;
            let convert = time_command(self.route_command(f)?, &routed)?;
            t.route.push(m.secs + convert.secs);
            line.push(format!(
                "route {:.3} s (convert {})",
                m.secs + convert.secs,
                convert.describe()
            ));
            remove_if_present(&routed)?;
            remove_if_present(&self.path(ROUTE_DIR).join("disk.raw"))?;
        }
        t.raw.push(m);
        remove_if_present(&image)
    }

    /// One timed `--format` build.
    fn formatted_once(&self, t: &mut Timings) -> Result<String> {
        let f = self.format.unwrap_or("raw");
        let formatted = self.path(&format!("{IMAGE_FILE}.{f}"));
        remove_if_present(&formatted)?;
        let m = time_nanoimg(&self.nanoimg, &self.work_dir, &formatted, Some(f))?;
        t.formatted_size = file_size(&formatted)?;
        t.formatted.push(m);
        remove_if_present(&formatted)?;
        Ok(format!("nanoimg {f} {}", m.describe()))
    }

    /// The statistics of the copy and the raw build, the summary line, then the `--format`
    /// table.
    fn report(&self, t: &Timings, small_files: usize) -> Result<()> {
        let copy = Stats::of(&t.copy).context("no copy timings")?;
        let raw = Stats::of(&secs(&t.raw)).context("no nanoimg timings")?;
        println!(
            "bench: payload {}, image {}, {} small files",
            format_mib(self.payload_bytes),
            format_mib(t.image_size),
            small_files
        );
        println!("bench: copy    {}", copy.describe(self.payload_bytes));
        println!(
            "bench: nanoimg {}{}",
            raw.describe(self.payload_bytes),
            cpu(&t.raw)
        );
        println!(
            "{}",
            summary_line(raw.median, copy.median, t.copy.len(), peak(&t.raw))
        );
        match self.format {
            Some(f) => report_format(f, t, raw.median, copy.median),
            None => Ok(()),
        }
    }
}

/// The `--format` table: the copy, the raw build, the `--format` build and the route,
/// with their ratios to the raw build, then a verdict line.
fn report_format(f: &str, t: &Timings, raw: f64, copy: f64) -> Result<()> {
    let built = Stats::of(&secs(&t.formatted)).context("no --format timings")?;
    let route = Stats::of(&t.route).context("no route timings")?;
    let x = |a: f64| ratio(a, raw).map_or_else(|| "n/a".into(), |r| format!("{r:.2}×"));
    let rss = peak(&t.formatted).map_or_else(|| "unknown".into(), format_mib);
    println!(
        "bench: --format {f}, medians of {} (ratios to the raw build):",
        t.formatted.len()
    );
    println!("bench:   copy                 {copy:>8.3} s  {}", x(copy));
    println!("bench:   nanoimg raw          {raw:>8.3} s  1.00×");
    println!(
        "bench:   nanoimg --format {f:<5} {:>8.3} s  {}  ({}{}, peak RSS {rss})",
        built.median,
        x(built.median),
        format_mib(t.formatted_size),
        cpu(&t.formatted)
    );
    println!(
        "bench:   raw, then {:<10} {:>8.3} s  {}",
        route_name(f),
        route.median,
        x(route.median)
    );
    println!(
        "bench: format {f}: {} of raw, {} the other route ({:.2} s against {:.2} s), peak RSS {rss}",
        x(built.median),
        if built.median < route.median { "faster than" } else { "NOT faster than" },
        built.median,
        route.median
    );
    Ok(())
}

/// The wall-clock times of `runs`.
fn secs(runs: &[Measured]) -> Vec<f64> {
    runs.iter().map(|m| m.secs).collect()
}

/// `, CPU N s`: the median CPU time of `runs` (empty without runs).
fn cpu(runs: &[Measured]) -> String {
    let cpu: Vec<f64> = runs.iter().map(|m| m.usage.cpu_secs).collect();
    median(&cpu)
        .map(|secs| format!(", CPU {secs:.3} s"))
        .unwrap_or_default()
}

/// The highest peak RSS of `runs`.
fn peak(runs: &[Measured]) -> Option<u64> {
    runs.iter().map(|m| m.usage.peak_rss).max()
}

/// Where the route's `tar` finds `disk.raw` (a hard link to the raw image).
const ROUTE_DIR: &str = "route";

/// The tool a user would otherwise turn the raw image into `format` with.
fn route_name(format: &str) -> &'static str {
    match format {
        "gce" => "tar -Sczf",
        _ => "qemu-img",
    }
}

/// The command that turns the raw image `raw` into `format` at `out`, as a user without
/// `--format` would: `qemu-img convert` with the options each cloud asks for, or for GCE,
/// GNU tar's sparse gzip of `disk.raw` (Google's documented command).
fn route_command(format: &str, work_dir: &Path, raw: &Path, out: &Path) -> Result<Command> {
    let qemu = |opts: &[&str]| {
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-f", "raw"])
            .args(opts)
            .arg(raw)
            .arg(out);
        c
    };
    let mut c = match format {
        "qcow2" => qemu(&["-O", "qcow2"]),
        "vhd" => qemu(&["-O", "vpc", "-o", "subformat=fixed,force_size=on"]),
        "vmdk" => qemu(&["-O", "vmdk", "-o", "subformat=streamOptimized"]),
        "vhdx" => qemu(&["-O", "vhdx"]),
        "gce" => {
            let dir = work_dir.join(ROUTE_DIR);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let link = dir.join("disk.raw");
            if raw.exists() {
                remove_if_present(&link)?;
                fs::hard_link(raw, &link)
                    .with_context(|| format!("linking {} to {}", raw.display(), link.display()))?;
            }
            let mut c = Command::new("tar");
            c.args(["--format=oldgnu", "-Sczf"])
                .arg(out)
                .arg("-C")
                .arg(&dir)
                .arg("disk.raw");
            c
        }
        other => bail!("no route known for --format {other}"),
    };
    c.current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(c)
}

/// Median, minimum and maximum of a series of timings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for an empty series.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let median = median(values)?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats { median, min, max })
    }

    fn describe(&self, bytes: u64) -> String {
        let rate = if self.median > 0.0 {
            format!(", {:.0} MiB/s", bytes as f64 / MIB as f64 / self.median)
        } else {
            String::new()
        };
        format!(
            "median {:.3} s (min {:.3} s, max {:.3} s{rate})",
            self.median, self.min, self.max
        )
    }
}

/// The median; the mean of the two middle values for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// `nanoimg / copy`; `None` when the copy took no measurable time.
pub fn ratio(nanoimg: f64, copy: f64) -> Option<f64> {
    (copy > 0.0 && nanoimg.is_finite()).then(|| nanoimg / copy)
}

/// The final report line.
pub fn summary_line(nanoimg: f64, copy: f64, runs: usize, peak_rss: Option<u64>) -> String {
    let ratio = ratio(nanoimg, copy).map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
    let memory = peak_rss.map_or_else(|| "unknown".to_owned(), format_mib);
    format!(
        "bench: ratio {ratio} (nanoimg {nanoimg:.2} s, copy {copy:.2} s, median of {runs}), peak memory {memory}"
    )
}

fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn format_size(bytes: u64) -> String {
    if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// SplitMix64: a tiny, fast, deterministic generator (Steele, Lea and
/// Flood), good enough for incompressible test data.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream (little-endian words;
    /// a partial last word uses its low bytes).
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&bytes[..rest.len()]);
        }
    }
}

/// A `boot.img` that passes nanoimg's checks without being a bootloader:
/// 512 + 94 × 512 bytes of 0x90, a stage2 region record at byte 426
/// (length at 434, type 12 at 442), an empty partition table and `55 AA`.
pub fn fake_boot_image() -> Vec<u8> {
    let stage2_len = (STAGE2_SECTORS * 512) as u64;
    let mut bytes = vec![0x90u8; 512 + STAGE2_SECTORS * 512];
    bytes[426..434].copy_from_slice(&0x8000u64.to_le_bytes());
    bytes[434..442].copy_from_slice(&stage2_len.to_le_bytes());
    bytes[442..446].copy_from_slice(&12u32.to_le_bytes());
    bytes[446..510].fill(0);
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    bytes
}

/// Writes `kernel.img` and `boot.img` into `dir`.
fn write_fake_release(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut kernel = vec![0u8; KERNEL_SIZE];
    SplitMix64::new(!SEED).fill(&mut kernel);
    // An x86_64 ELF64 header: nanoimg reads a kernel's architecture from it.
    kernel[..20].fill(0);
    kernel[..4].copy_from_slice(b"\x7fELF");
    kernel[4] = 2;
    kernel[5] = 1;
    kernel[18] = 62;
    for (name, bytes) in [("kernel.img", kernel), ("boot.img", fake_boot_image())] {
        let path = dir.join(name);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Compiles the static sample program into `work_dir/hello`.
fn compile_program(cc: &Path, work_dir: &Path) -> Result<PathBuf> {
    crate::samples::write_sources(work_dir)?;
    let mut command = Command::new(cc);
    command
        .current_dir(work_dir)
        .args(["-static", "-O2", "-o", PROGRAM, PROGRAM_SOURCE_FILE])
        .stdin(Stdio::null());
    let output = fixtures::output(&mut command)?;
    if !output.status.success() {
        bail!(
            "{} -static -O2 failed ({}); a static build needs static glibc \
             (Debian/Ubuntu: apt-get install libc6-dev):\n{}",
            cc.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(work_dir.join(PROGRAM))
}

/// What the payload folder holds, written to [`STAMP_FILE`] once it is
/// complete.
fn payload_stamp(small_files: usize) -> String {
    format!(
        "splitmix64 seed={SEED:#x} big={BIG_FILE_SIZE} small={small_files}x{SMALL_FILE_SIZE} dirs={SMALL_DIRS}\n"
    )
}

/// Generates the payload, unless `work_dir` already holds a complete one
/// with the same parameters (a `--keep` folder from an earlier run).
fn prepare_payload(work_dir: &Path, payload: &Path, small_files: usize) -> Result<()> {
    let stamp_path = work_dir.join(STAMP_FILE);
    let stamp = payload_stamp(small_files);
    let big = payload.join("big.bin");
    let reusable = fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp)
        && fs::metadata(&big).is_ok_and(|meta| meta.len() == BIG_FILE_SIZE);
    if reusable {
        println!("bench: reusing the payload in {}", payload.display());
        return Ok(());
    }
    remove_if_present(&stamp_path)?;
    removed(fs::remove_dir_all(payload), payload)?;
    println!(
        "bench: generating the payload ({} + {small_files} × {})",
        format_size(BIG_FILE_SIZE),
        format_size(SMALL_FILE_SIZE as u64)
    );
    let started = Instant::now();
    generate_payload(payload, small_files)?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    // Untimed: otherwise the write-back of the fresh payload competes with
    // the first run.
    sync_everything();
    println!(
        "bench: payload generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes `big.bin` (in 1 MiB chunks) and the small files into `payload`.
fn generate_payload(payload: &Path, small_files: usize) -> Result<()> {
    fs::create_dir_all(payload).with_context(|| format!("creating {}", payload.display()))?;
    let mut prng = SplitMix64::new(SEED);

    let big = payload.join("big.bin");
    let mut file = File::create(&big).with_context(|| format!("creating {}", big.display()))?;
    let mut chunk = vec![0u8; CHUNK];
    for _ in 0..BIG_FILE_SIZE / CHUNK as u64 {
        prng.fill(&mut chunk);
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", big.display()))?;
    }
    drop(file);

    let mut bytes = [0u8; SMALL_FILE_SIZE];
    for index in 0..small_files {
        let path = payload.join(small_file_path(index));
        if index < SMALL_DIRS {
            let dir = path.parent().expect("small files are in a folder");
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        prng.fill(&mut bytes);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Where small file `index` goes, relative to the payload folder: spread
/// round-robin over [`SMALL_DIRS`] folders.
pub fn small_file_path(index: usize) -> PathBuf {
    Path::new("small")
        .join(format!("d{:02}", index % SMALL_DIRS))
        .join(format!("f{index:07}.bin"))
}

/// The program, then every regular file under `payload` as [`list_files`] walks them: what
/// the copy reads, in order.
fn inputs(program: &Path, payload: &Path) -> Result<Vec<PathBuf>> {
    let mut inputs = vec![program.to_path_buf()];
    list_files(payload, &mut inputs)?;
    Ok(inputs)
}

/// Appends every regular file under `dir` to `files`, depth first, each
/// folder's entries sorted by name.
fn list_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let reading = || format!("reading {}", dir.display());
    let entries = fs::read_dir(dir).with_context(reading)?;
    let mut entries = entries
        .collect::<io::Result<Vec<_>>>()
        .with_context(reading)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            list_files(&path, files)?;
        } else if kind.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

fn total_size(files: &[PathBuf]) -> Result<u64> {
    files.iter().map(|file| file_size(file)).sum()
}

/// The baseline: lists the payload, then reads the program and every
/// payload file in order, appending them to `out` through one 1 MiB buffer,
/// and syncs `out`. Returns the bytes written.
fn copy_baseline(program: &Path, payload: &Path, out: &Path) -> Result<u64> {
    let inputs = inputs(program, payload)?;
    let mut output = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let writing = || format!("writing {}", out.display());
    let mut buffer = vec![0u8; CHUNK];
    let mut filled = 0;
    let mut written = 0u64;
    for input in &inputs {
        let mut file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
        loop {
            let read = match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(err).with_context(|| format!("reading {}", input.display()))
                }
            };
            filled += read;
            if filled == buffer.len() {
                output.write_all(&buffer).with_context(writing)?;
                written += filled as u64;
                filled = 0;
            }
        }
    }
    output.write_all(&buffer[..filled]).with_context(writing)?;
    written += filled as u64;
    let syncing = || format!("syncing {}", out.display());
    output.sync_all().with_context(syncing)?;
    Ok(written)
}

/// `nanoimg build hello -c config.json --kernel-dir kernel -o bench.img`,
/// run in `work_dir`.
fn nanoimg_command(nanoimg: &Path, work_dir: &Path, format: Option<&str>) -> Command {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(work_dir)
        .args(["build", PROGRAM, "-c", CONFIG_FILE])
        .args(["--kernel-dir", KERNEL_DIR])
        .stdin(Stdio::null());
    if let Some(f) = format {
        command.args(["--format", f]);
    }
    command
}

fn command_line(command: &Command) -> Vec<String> {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

/// One timed command.
#[derive(Debug, Clone, Copy)]
struct Measured {
    secs: f64,
    /// Resources the child used.
    usage: ChildUsage,
}

impl Measured {
    fn describe(&self) -> String {
        format!(
            "{:.3} s (CPU {:.3} s, peak RSS {})",
            self.secs,
            self.usage.cpu_secs,
            format_mib(self.usage.peak_rss)
        )
    }
}

/// What `wait4` reports about a finished child.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChildUsage {
    /// Peak resident set size, in bytes.
    peak_rss: u64,
    /// User plus system CPU time, in seconds.
    cpu_secs: f64,
}

/// Runs nanoimg once (output to [`NANOIMG_LOG`]) into `image`, in `format` if given, syncs
/// `image`, and measures both.
fn time_nanoimg(
    nanoimg: &Path,
    work_dir: &Path,
    image: &Path,
    format: Option<&str>,
) -> Result<Measured> {
    let log_path = work_dir.join(NANOIMG_LOG);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = nanoimg_command(nanoimg, work_dir, format);
    command.args(["-o"]).arg(image);
    command.stdout(log).stderr(log_err);
    time_command(command, image).map_err(|e| {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        e.context(format!(
            "last lines of {}:\n{}",
            log_path.display(),
            expect::tail(&log, LOG_TAIL_LINES).join("\n")
        ))
    })
}

/// Runs `command`, then syncs `output`: the time from the spawn until the output is on
/// disk, with the child's CPU time and peak RSS.
fn time_command(mut command: Command, output: &Path) -> Result<Measured> {
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    let (status, usage) =
        wait_with_usage(child).with_context(|| format!("waiting for {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    File::open(output)
        .and_then(|file| file.sync_all())
        .with_context(|| {
            format!(
                "{command:?} succeeded but {} cannot be synced",
                output.display()
            )
        })?;
    Ok(Measured {
        secs: started.elapsed().as_secs_f64(),
        usage,
    })
}

/// Reaps `child` with `wait4`, which also reports its peak RSS and CPU time.
fn wait_with_usage(child: Child) -> io::Result<(ExitStatus, ChildUsage)> {
    use std::os::unix::process::ExitStatusExt;

    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers refer to live, writable locals. `child` was
        // spawned by us and is not waited for elsewhere (it is dropped below
        // without `wait`, which neither waits nor kills).
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    drop(child);
    let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    // Linux reports KiB, macOS bytes.
    let peak_rss = if cfg!(target_os = "macos") {
        max_rss
    } else {
        max_rss * 1024
    };
    let secs = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    let usage = ChildUsage {
        peak_rss,
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
    };
    Ok((ExitStatus::from_raw(status), usage))
}

fn remove_if_present(path: &Path) -> Result<()> {
    removed(fs::remove_file(path), path)
}

/// The `result` of removing `path`, where its absence is fine.
fn removed(result: io::Result<()>, path: &Path) -> Result<()> {
    match result {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `sync(2)`: flushes every dirty page of the system to disk.
fn sync_everything() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// The first three fields of `/proc/loadavg`, where there is one.
fn load_average() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[2.5]), Some(2.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 1.0, 9.0, 2.0]), Some(2.0));
    }

    #[test]
    fn stats_are_median_min_and_max() {
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(
            Stats::of(&[1.5, 0.5, 3.0, 1.0]),
            Some(Stats {
                median: 1.25,
                min: 0.5,
                max: 3.0
            })
        );
    }

    #[test]
    fn ratio_is_nanoimg_over_copy() {
        assert_eq!(ratio(1.5, 0.5), Some(3.0));
        assert_eq!(ratio(0.5, 1.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn summary_line_format() {
        assert_eq!(
            summary_line(1.234, 0.674, 5, Some(8_283_750)),
            "bench: ratio 1.83 (nanoimg 1.23 s, copy 0.67 s, median of 5), peak memory 7.9 MiB"
        );
        assert_eq!(
            summary_line(1.0, 0.0, 3, None),
            "bench: ratio n/a (nanoimg 1.00 s, copy 0.00 s, median of 3), peak memory unknown"
        );
    }

    #[test]
    fn splitmix64_matches_the_reference_and_is_deterministic() {
        // Reference outputs of SplitMix64 seeded with 0.
        let mut prng = SplitMix64::new(0);
        assert_eq!(prng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(prng.next_u64(), 0x6e78_9e6a_a1b9_65f4);

        let mut a = [0u8; 37];
        let mut b = [0u8; 37];
        SplitMix64::new(SEED).fill(&mut a);
        SplitMix64::new(SEED).fill(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 37]);
        let mut first = SplitMix64::new(SEED);
        assert_eq!(a[..8], first.next_u64().to_le_bytes());

        // Filling in pieces of whole words gives the same stream.
        let mut whole = vec![0u8; 4096];
        SplitMix64::new(7).fill(&mut whole);
        let mut pieces = vec![0u8; 4096];
        let mut prng = SplitMix64::new(7);
        for piece in pieces.chunks_mut(1024) {
            prng.fill(piece);
        }
        assert_eq!(whole, pieces);
        assert_ne!(whole, {
            let mut other = vec![0u8; 4096];
            SplitMix64::new(8).fill(&mut other);
            other
        });
    }

    #[test]
    fn fake_boot_image_has_a_valid_stage2_record() {
        let boot = fake_boot_image();
        assert_eq!(boot.len(), 512 + 94 * 512);
        let stage2 = u64::from_le_bytes(boot[434..442].try_into().expect("8 bytes"));
        assert_eq!(stage2, 94 * 512);
        assert_eq!(stage2 + 512, boot.len() as u64);
        let kind = u32::from_le_bytes(boot[442..446].try_into().expect("4 bytes"));
        assert_eq!(kind, 12);
        assert_eq!(boot[510..512], [0x55, 0xAA]);
        assert_eq!(boot[0], 0x90);
        assert_eq!(boot[512..], vec![0x90u8; 94 * 512][..]);
    }

    #[test]
    fn small_files_spread_over_100_folders() {
        assert_eq!(small_file_path(0), Path::new("small/d00/f0000000.bin"));
        assert_eq!(small_file_path(99), Path::new("small/d99/f0000099.bin"));
        assert_eq!(small_file_path(100), Path::new("small/d00/f0000100.bin"));
        assert_eq!(small_file_path(99_999), Path::new("small/d99/f0099999.bin"));
    }

    #[test]
    fn copy_baseline_concatenates_program_then_sorted_payload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join("prog");
        fs::write(&program, b"P").expect("write");
        let payload = dir.path().join("payload");
        fs::create_dir_all(payload.join("b/c")).expect("mkdir");
        fs::write(payload.join("z"), b"Z").expect("write");
        fs::write(payload.join("a"), vec![b'A'; CHUNK + 3]).expect("write");
        fs::write(payload.join("b/c/d"), b"D").expect("write");
        fs::write(payload.join("b/x"), b"X").expect("write");
        let out = dir.path().join("out");
        let written = copy_baseline(&program, &payload, &out).expect("copy");
        let mut expected = b"P".to_vec();
        expected.extend(vec![b'A'; CHUNK + 3]);
        expected.extend(b"DXZ");
        assert_eq!(written, expected.len() as u64);
        assert_eq!(fs::read(&out).expect("read"), expected);
    }

    #[test]
    fn nanoimg_is_run_with_the_bench_config_in_the_work_dir() {
        let mut command = nanoimg_command(Path::new("/bin/nanoimg"), Path::new("/w"), None);
        command.args(["-o", IMAGE_FILE]);
        assert_eq!(
            command_line(&command).join(" "),
            "/bin/nanoimg build hello -c config.json --kernel-dir kernel -o bench.img"
        );
        assert_eq!(command.get_current_dir(), Some(Path::new("/w")));
    }

    #[test]
    fn wait4_reports_status_and_peak_rss() {
        let child = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("spawn sh");
        let (status, usage) = wait_with_usage(child).expect("wait4");
        assert_eq!(status.code(), Some(3));
        assert!(usage.peak_rss > 0, "{usage:?}");
        assert!(usage.cpu_secs >= 0.0, "{usage:?}");
    }
}
