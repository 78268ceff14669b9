//! The `nanoimg` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        } => nanoimg::build(&nanoimg::BuildOptions {
            program,
            config,
            kernel_dir,
            output,
        })
        .map(|report| {
            eprintln!(
                "nanoimg: {} bytes, program {}",
                report.layout.size, report.plan.program_path
            );
            println!(
                "Bootable image file:{}",
                nanoimg::display_path(&report.output).display()
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
