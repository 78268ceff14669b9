//! The root filesystem tree, packed in this order: the program, what the config adds
//! (`Files`, `Dirs`, `MapDirs`), the program's libraries, the mount points; then the whole
//! root under them (`pack_root`); then the libraries the other packed ELF files need; then
//! the files ops generates where nothing provided them. [`Packed`] counts what each source
//! brought in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nanoimg_config::Config;
use nanoimg_elf::{
    Arch, ImageView, NeededClosure, Resolution, Resolver, RuntimeLoad, Unresolved, MAX_PACKED_ELFS,
};
use nanoimg_tfs::{Dir, FileSource, Node};
use nanoimg_tuple::Tuple;

use crate::{host_tree, manifest, packing, Inputs, Packed, PlanError};

/// The program being packed.
pub(crate) struct Program<'a> {
    /// Its path in the image.
    pub path: &'a str,
    /// Its size on the host.
    pub len: u64,
    pub arch: Arch,
}

/// The root tree and what was learnt packing it.
pub(crate) struct RootTree {
    pub tree: Dir,
    pub packed: Packed,
    /// The program's closure (with the config's `Libraries`).
    pub resolution: Resolution,
    /// The other packed ELF files' closure.
    pub needed: NeededClosure,
    pub runtime_loads: Vec<RuntimeLoad>,
    /// The manifest's `mounts` and the host folder of each 9p attach id.
    pub mounts: Tuple,
    pub shares: Vec<PathBuf>,
}

/// A file ops generates where nothing provides it: its path and bytes.
type Generated = [(&'static str, Vec<u8>); 3];

/// Packs the root tree (see the module's docs for the order), adding notes as it goes.
pub(crate) fn root_tree(
    inputs: &Inputs,
    program: &Program,
    config_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<RootTree, PlanError> {
    let config = inputs.config;
    let generated = generated_files(config);
    let whole_root = whole_root(inputs)?;
    let mut packed = Packed::default();
    let mut root = Dir::new();
    root.insert(
        program.path.as_bytes(),
        Node::File(FileSource::Host {
            path: inputs.program.to_path_buf(),
            len: program.len,
        }),
    )?;
    let after_program = packing::totals(&root);
    add_config_entries(&mut root, inputs, config_dir, notes)?;
    packed.config = packing::totals(&root).since(after_program);
    let before_libraries = packing::totals(&root);
    let resolver = crate::resolver(inputs)?;
    let resolution = resolver.resolve_with(inputs.program, program.path, &config.libraries)?;
    add_libraries(&mut root, &resolution, notes)?;
    packed.program = after_program + packing::totals(&root).since(before_libraries);
    let (mounts, mount_notes, shares) =
        manifest::mounts(config, config_dir, inputs.keep_mount_ids)?;
    notes.extend(mount_notes);
    add_mount_points(&mut root, config)?;
    if let Some(dir) = &whole_root {
        packed.root = overlay_whole_root(&mut root, dir, &generated, notes)?;
    }
    let needed = add_needed(
        &mut root,
        &resolver,
        &resolution,
        program,
        whole_root.is_none(),
        &mut packed,
    )?;
    notes.extend(needed_notes(&needed, resolver.root()));
    let runtime_loads = resolver.runtime_loads_of(
        &resolution,
        inputs.program,
        program.path,
        &needed.examined,
        Some(&packing::TreeView(&root)),
    );
    add_generated(&mut root, &generated)?;
    Ok(RootTree {
        tree: root,
        packed,
        resolution,
        needed,
        runtime_loads,
        mounts,
        shares,
    })
}

/// The files ops generates where nothing provides them.
fn generated_files(config: &Config) -> Generated {
    let name_servers = if config.name_servers.is_empty() {
        vec!["8.8.8.8".to_string()]
    } else {
        config.name_servers.clone()
    };
    let resolv: String = name_servers
        .iter()
        .map(|ns| format!("nameserver  {ns}\n"))
        .collect();
    [
        ("/etc/passwd", b"root:x:0:0:root:/root:/bin/nobash".to_vec()),
        ("/etc/resolv.conf", resolv.into_bytes()),
        ("/proc/sys/kernel/hostname", b"uniboot".to_vec()),
    ]
}

/// The root to pack whole, with `pack_root` (which needs one).
fn whole_root(inputs: &Inputs) -> Result<Option<PathBuf>, PlanError> {
    match (inputs.pack_root, crate::target_root(inputs)) {
        (false, _) => Ok(None),
        (true, Some(r)) => Ok(Some(r)),
        (true, None) => Err(PlanError::PackRootWithoutRoot),
    }
}

/// The config's `Files`, `Dirs` and `MapDirs`.
fn add_config_entries(
    root: &mut Dir,
    inputs: &Inputs,
    config_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    let config = inputs.config;
    let image_root = crate::target_root(inputs).filter(|_| inputs.image_root);
    let sources = host_tree::Sources {
        cwd: inputs.cwd,
        image_root: image_root.as_deref(),
    };
    host_tree::add_files(root, &config.files, &sources)?;
    host_tree::add_dirs(root, &config.dirs, &sources, notes)?;
    host_tree::add_map_dirs(
        root,
        &config.map_dirs,
        config_dir,
        crate::target_root(inputs).as_deref(),
        &config.args,
        notes,
    )
}

/// The program's interpreter and libraries, where the user did not pack a file already.
fn add_libraries(
    root: &mut Dir,
    resolution: &Resolution,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    for dep in &resolution.dependencies {
        if root.get(dep.guest_path.as_bytes()).is_some() {
            notes.push(format!(
                "keeping {} as given instead of the library found at {}",
                dep.guest_path,
                dep.host_path.display()
            ));
            continue;
        }
        root.insert(
            dep.guest_path.as_bytes(),
            Node::File(host_file(&dep.host_path)?),
        )?;
    }
    Ok(())
}

/// A host file to pack, read for its size.
fn host_file(path: &Path) -> Result<FileSource, PlanError> {
    FileSource::host(path).map_err(|source| PlanError::Program {
        path: path.to_path_buf(),
        source,
    })
}

/// A folder at each `Mounts` mount point.
fn add_mount_points(root: &mut Dir, config: &Config) -> Result<(), PlanError> {
    for path in config.mounts.values() {
        let dir = path.split(':').next().unwrap_or(path);
        host_tree::add(root, dir, Node::Dir(Dir::new()))?;
    }
    Ok(())
}

/// Places the tree packed so far over the whole root `dir` (`pack_root`) and returns what
/// the root added. The root provides a generated file only with a regular file there (a
/// link to nowhere, as a container's /etc/resolv.conf often is, gets the generated one).
fn overlay_whole_root(
    root: &mut Dir,
    dir: &Path,
    generated: &Generated,
    notes: &mut Vec<String>,
) -> Result<crate::Count, PlanError> {
    let mut skipped = packing::Skipped::default();
    let base = packing::walk_root(dir, &mut skipped)?;
    for (path, bytes) in generated {
        let provided = matches!(
            packing::TreeView(&base).file(path),
            nanoimg_elf::InImage::File(_)
        );
        if !provided && root.get(path.as_bytes()).is_none() {
            root.insert(
                path.as_bytes(),
                Node::File(FileSource::Bytes(bytes.clone())),
            )?;
        }
    }
    let explicit = packing::totals(root);
    let (tree, replaced) = packing::overlay(base, root)?;
    *root = tree;
    if let Some(first) = &skipped.first {
        notes.push(format!(
            "skipped {} device {}, FIFOs and sockets of the root (the first: {})",
            skipped.count,
            if skipped.count == 1 { "file" } else { "files" },
            first.display()
        ));
    }
    if let Some(first) = replaced.first() {
        notes.push(format!(
            "{} {} of the root replaced by what the program, the config or nanoimg packs there (the first: {first})",
            replaced.len(),
            if replaced.len() == 1 { "path" } else { "paths" },
        ));
    }
    Ok(packing::totals(root).since(explicit))
}

/// Every other ELF file packed: its libraries, found as its loader will find them, added
/// from the root when `add` (not with the whole root, which is all there already).
fn add_needed(
    root: &mut Dir,
    resolver: &Resolver,
    resolution: &Resolution,
    program: &Program,
    add: bool,
    packed: &mut Packed,
) -> Result<NeededClosure, PlanError> {
    let closure_paths: BTreeSet<&str> = std::iter::once(program.path)
        .chain(
            resolution
                .dependencies
                .iter()
                .map(|d| d.guest_path.as_str()),
        )
        .collect();
    let others: Vec<(String, PathBuf)> = root
        .files()
        .into_iter()
        .filter_map(|(path, source)| match source {
            // Shorter than an ELF header: not worth opening.
            FileSource::Host { path: host, len } if *len >= 64 => {
                let guest = String::from_utf8(path).ok()?;
                (!closure_paths.contains(guest.as_str())).then(|| (guest, host.clone()))
            }
            _ => None,
        })
        .collect();
    let needed = resolver.needed_closure(
        program.arch,
        &others,
        &packing::TreeView(root),
        add,
        MAX_PACKED_ELFS,
    );
    packed.elf_files = needed.examined.len() as u64;
    for dep in &needed.added {
        let source = host_file(&dep.host_path)?;
        packed.needed.files += 1;
        packed.needed.bytes += source.len();
        root.insert(dep.guest_path.as_bytes(), Node::File(source))?;
    }
    Ok(needed)
}

/// The notes on the other ELF files' closure: what nothing has, and what was not examined.
fn needed_notes(needed: &NeededClosure, root: &Path) -> Vec<String> {
    let mut notes = unresolved_notes(&needed.unresolved, root);
    if needed.not_examined > 0 {
        notes.push(format!(
            "{} more ELF files are packed but were not checked for the libraries they need: \
             nanoimg examines {MAX_PACKED_ELFS} per build",
            needed.not_examined
        ));
    }
    notes
}

/// The files ops generates, where nothing provided them.
fn add_generated(root: &mut Dir, generated: &Generated) -> Result<(), PlanError> {
    for (path, bytes) in generated {
        if root.get(path.as_bytes()).is_none() {
            root.insert(
                path.as_bytes(),
                Node::File(FileSource::Bytes(bytes.clone())),
            )?;
        }
    }
    Ok(())
}

/// Notes for the libraries packed ELF files need and nothing has: one per (ELF, name), at
/// most [`MAX_UNRESOLVED_NOTES`], then one counting the rest.
fn unresolved_notes(unresolved: &[Unresolved], root: &Path) -> Vec<String> {
    let mut notes: Vec<String> = unresolved
        .iter()
        .take(MAX_UNRESOLVED_NOTES)
        .map(|u| {
            format!(
                "{} needs {}, which neither the image nor {} has; it will not load in the guest",
                u.object,
                u.name,
                root.display()
            )
        })
        .collect();
    if unresolved.len() > MAX_UNRESOLVED_NOTES {
        notes.push(format!(
            "{} more libraries needed by packed ELF files are missing (not listed)",
            unresolved.len() - MAX_UNRESOLVED_NOTES
        ));
    }
    notes
}

/// The unresolved needs listed one by one in the notes.
pub const MAX_UNRESOLVED_NOTES: usize = 20;
