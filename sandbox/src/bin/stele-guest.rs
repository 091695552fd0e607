//! `stele-guest`: the agent inside stele's micro-VM (PID 1 after the
//! initramfs hands over). See `stele_sandbox::vm::guest`.

fn main() -> std::process::ExitCode {
    stele_sandbox::vm::guest::run()
}
