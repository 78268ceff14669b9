//! The `nanoimg` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nanoimg",
    version,
    about = "Build bootable Nanos unikernel images natively"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the program's libraries are found.
#[derive(Args)]
struct Resolution {
    /// Resolve the interpreter and libraries inside DIR instead of / (the config's
    /// TargetRoot).
    #[arg(long, value_name = "DIR")]
    target_root: Option<PathBuf>,
    /// Also search the build host's LD_LIBRARY_PATH, after DT_RPATH, as the loader would.
    #[arg(long)]
    ld_library_path: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Package a program as a bootable Nanos disk image (like `ops build`).
    Build {
        /// The program to run in the image.
        program: PathBuf,
        /// An ops config.json.
        #[arg(short = 'c', long = "config", value_name = "CONFIG.json")]
        config: Option<PathBuf>,
        /// An unpacked Nanos release folder: kernel.img, boot.img, [bootx64.efi], [klibs/].
        #[arg(long, value_name = "DIR")]
        kernel_dir: PathBuf,
        /// Where to write the image [default: <program name>.img].
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        resolution: Resolution,
    },
    /// Show the interpreter and libraries a program needs, where each was found and why
    /// (read from its ELF headers; the program is never run).
    Deps {
        /// The program.
        program: PathBuf,
        /// An ops config.json (its Program sets the path $ORIGIN refers to).
        #[arg(short = 'c', long = "config", value_name = "CONFIG.json")]
        config: Option<PathBuf>,
        #[command(flatten)]
        resolution: Resolution,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            program,
            config,
            kernel_dir,
            output,
            resolution,
        } => build(nanoimg::BuildOptions {
            program,
            config,
            kernel_dir,
            output,
            target_root: resolution.target_root,
            use_ld_library_path: resolution.ld_library_path,
        }),
        Command::Deps {
            program,
            config,
            resolution,
            json,
        } => deps(&program, config, resolution, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(options: nanoimg::BuildOptions) -> Result<(), nanoimg::BuildError> {
    let report = nanoimg::build(&options)?;
    for d in &report.plan.dependencies {
        eprintln!(
            "nanoimg: packed {} <- {}",
            d.guest_path,
            d.host_path.display()
        );
    }
    eprintln!(
        "nanoimg: {} bytes, program {}",
        report.layout.size, report.plan.program_path
    );
    println!(
        "Bootable image file:{}",
        nanoimg::display_path(&report.output).display()
    );
    Ok(())
}

fn deps(
    program: &std::path::Path,
    config: Option<PathBuf>,
    resolution: Resolution,
    json: bool,
) -> Result<(), nanoimg::BuildError> {
    let report = nanoimg::deps(
        program,
        config.as_deref(),
        resolution.target_root.as_deref(),
        resolution.ld_library_path,
    )?;
    let info = &report.resolution.program;
    if json {
        let value = serde_json::json!({
            "program": {
                "host_path": nanoimg::display_path(program),
                "guest_path": report.program_path,
                "kind": info.kind,
                "interpreter": info.interpreter,
                "needed": info.needed,
                "rpath": info.rpath,
                "runpath": info.runpath,
            },
            "dependencies": report.resolution.dependencies,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    let kind = serde_json::to_value(info.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!("{} ({kind} x86_64 ELF)", report.program_path);
    for d in &report.resolution.dependencies {
        let why = match d.rule {
            nanoimg::elf::Rule::Interpreter => format!("PT_INTERP of {}", d.needed_by),
            rule => format!(
                "{} needed by {}, found by {}",
                d.name,
                d.needed_by,
                serde_json::to_value(rule)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        };
        println!("  {} <- {} ({why})", d.guest_path, d.host_path.display());
    }
    Ok(())
}
