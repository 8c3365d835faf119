fn main() -> std::process::ExitCode {
    cachegate::cli::main()
}
