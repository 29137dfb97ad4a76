//! The `micromart` binary: parses the command line and hands over to the library.

use clap::Parser as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    micromart::cli::main(micromart::cli::Cli::parse())
}
