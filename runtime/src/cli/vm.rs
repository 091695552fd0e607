//! `stele vm …`: the micro-VM backend's guest image.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use stele_sandbox::vm::{build_image, ImageStore};

/// Arguments of `stele vm`.
#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VmCommand,
}

/// `stele vm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VmCommand {
    /// Build or inspect the guest image.
    Image(ImageArgs),
}

/// Arguments of `stele vm image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `stele vm image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build the guest image from Debian packages (cached by the hash of its inputs) and print its digest.
    Build(StoreArgs),
    /// Print the current image's manifest.
    Show(StoreArgs),
}

/// Where images are kept.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Image store [default: $STELE_VM_IMAGES, else $STATE/vm/images].
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// The image store: `$STELE_VM_IMAGES`, else `$STATE/vm/images`. Kept apart
/// from per-session state so that tests with a private state directory still
/// find the image the setup script built.
pub fn default_store() -> ImageStore {
    match std::env::var_os("STELE_VM_IMAGES") {
        Some(p) => ImageStore::at(PathBuf::from(p)),
        None => ImageStore::at(crate::paths::state_dir().join("vm/images")),
    }
}

fn store(args: &StoreArgs) -> ImageStore {
    match &args.store {
        Some(p) => ImageStore::at(p.clone()),
        None => default_store(),
    }
}

/// Run `stele vm`.
pub fn run(args: VmArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        VmCommand::Image(ImageArgs {
            command: ImageCommand::Build(a),
        }) => {
            let store = store(&a);
            let started = Instant::now();
            let report = build_image(&store, &mut |step| eprintln!("vm image: {step}"))?;
            let m = &report.image.manifest;
            if report.cached {
                eprintln!("vm image: cached ({})", report.image.dir.display());
            } else {
                eprintln!(
                    "vm image: built in {:.1} s ({})",
                    started.elapsed().as_secs_f64(),
                    report.image.dir.display()
                );
            }
            eprintln!(
                "vm image: kernel {} ({}), root {} + {}",
                m.kernel_release,
                m.kernel_package,
                m.suite,
                m.packages.join(", ")
            );
            println!("{}", m.digest);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Image(ImageArgs {
            command: ImageCommand::Show(a),
        }) => {
            let image = store(&a).current()?;
            println!("{}", serde_json::to_string_pretty(&image.manifest)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
