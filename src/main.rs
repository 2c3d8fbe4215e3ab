//! The `tokenledger` binary: all work happens in the library.

fn main() -> std::process::ExitCode {
    tokenledger::cli::main()
}
