//! The `micromart` binary: parses the command line and hands over to the library.

use clap::Parser as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[cfg(not(target_os = "linux"))]
    tune_allocator();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match micromart::cli::Cli::try_parse_from(&args) {
        Ok(cli) => micromart::cli::main(cli),
        Err(error) => {
            let _ = error.print();
            micromart::cli::refused_exit_code(&error, &args)
        }
    }
}

/// mimalloc's defaults commit arena memory eagerly and purge freed pages late, which left an
/// idle service at 23–36 MiB RSS and the embedded shop at 66 MiB (argon2's 19 MiB working set
/// stayed resident after a login). Committing on demand and purging at once brought them to
/// 11–13 MiB and 18 MiB with throughput unchanged within noise (bench/README.md, memory).
///
/// It must run before the first Rust allocation, which creates the first arena (already
/// before `main`): on Linux it is an `.init_array` constructor.
extern "C" fn tune_allocator() {
    // Option numbers from mimalloc.h (`mi_option_e`), the same in mimalloc v2 and v3.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table and allocates
    // nothing; it may be called before mimalloc is initialised.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR_AT_LOAD: extern "C" fn() = tune_allocator;
