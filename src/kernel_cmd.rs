//! `nanoimg kernel fetch | list | verify`: the pinned releases, the cache and the lock.

use crate::KernelCommand;

pub fn kernel(command: KernelCommand) -> Result<(), nanoimg::BuildError> {
    use nanoimg::release::{default_pin, pins, release_name, Lock, Releases};
    match command {
        KernelCommand::Fetch {
            version,
            arch,
            fetch,
        } => {
            let version = version.unwrap_or_else(|| default_pin(arch).version);
            let lock_file = nanoimg::lock_path(fetch.lock.as_deref(), None);
            let mut lock = Lock::load(&lock_file)?;
            let releases = Releases::new(nanoimg::cache()?, fetch.release_options());
            let got = releases.get(&version, arch, &mut lock)?;
            lock.save(&lock_file)?;
            let name = release_name(&version, arch);
            if got.trusted_on_first_use {
                eprintln!("nanoimg: Nanos {name} has no pinned SHA-256; trusting it on first use");
            }
            println!(
                "Nanos {name}: sha256 {} ({}), in {}",
                got.locked.sha256,
                if got.downloaded {
                    "downloaded"
                } else {
                    "already cached"
                },
                got.kernel_dir.dir.display()
            );
        }
        KernelCommand::List => {
            let cache = nanoimg::cache()?;
            let lock = Lock::load(std::path::Path::new("nanoimg.lock"))?;
            for p in pins() {
                let name = p.name();
                let sha = p
                    .sha256
                    .clone()
                    .or_else(|| lock.release(&p.version, p.arch).map(|r| r.sha256.clone()))
                    .or_else(|| cache.indexed(&name));
                let cached = sha.as_ref().is_some_and(|s| cache.release_dir(s).is_dir());
                println!(
                    "{name}  {}{}  {}  sha256 {}{}",
                    p.arch.ops_name(),
                    if p.version == default_pin(p.arch).version {
                        " (default)"
                    } else {
                        ""
                    },
                    if cached { "cached" } else { "not cached" },
                    sha.as_deref().unwrap_or("unknown"),
                    if p.sha256.is_some() { " (pinned)" } else { "" },
                );
            }
        }
        KernelCommand::Verify { lock } => {
            let lock_file = nanoimg::lock_path(lock.as_deref(), None);
            let lock = Lock::load_existing(&lock_file)?;
            let releases = Releases::new(nanoimg::cache()?, Default::default());
            let mut bad = None;
            if lock.releases.is_empty() {
                println!("{} records no release to verify", lock_file.display());
            }
            for (version, result) in releases.verify(&lock) {
                match result {
                    None => println!("Nanos {version}: not cached"),
                    Some(Ok(())) => println!("Nanos {version}: ok"),
                    Some(Err(e)) => {
                        println!("Nanos {version}: FAILED: {e}");
                        bad = Some(e);
                    }
                }
            }
            if let Some(e) = bad {
                return Err(e.into());
            }
        }
    }
    Ok(())
}
