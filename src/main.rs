fn main() -> std::process::ExitCode {
    hostsmith::cli::main()
}
