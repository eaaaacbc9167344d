//! The `linkfresh` binary: everything lives in the library; see `linkfresh::cli`.

fn main() -> std::process::ExitCode {
    linkfresh::cli::main()
}
