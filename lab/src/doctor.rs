//! `lab doctor`: placeholder replaced below.
pub fn doctor() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
