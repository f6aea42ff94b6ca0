//! The `fleetmig` command: all of it lives in the library (`app`), so that its tests and
//! the binary run the same code.

fn main() -> std::process::ExitCode {
    fleetmig::internal::main()
}
