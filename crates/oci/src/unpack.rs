//! Applying layers into a cached root filesystem.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nanoimg_chroot::{ChrootError, Follow, Missing, Resolver};

use crate::escape::escape;
use crate::store::{clean_name, sha256_hex, Hashing, Store};
use crate::tarball::{self, Streamed, TarError};
use crate::{Format, Layer, OciError, Resolved, Source};

/// Largest single file accepted.
const MAX_FILE: u64 = 16 << 30;
/// Largest total of file data accepted.
const MAX_TOTAL: u64 = 64 << 30;
/// Most members accepted, all layers together.
const MAX_MEMBERS: usize = 2_000_000;
/// Longest member path accepted, in bytes.
const MAX_PATH: usize = 4096;
/// Most symbolic links followed while resolving one path (the resolver's limit).
const MAX_LINKS: usize = nanoimg_chroot::MAX_LINKS;
/// Most member parents remembered (each of [`Unpacker::direct`] and
/// [`Unpacker::linked`]) before that memo starts over; they only save the resolver's walk.
const MAX_PARENTS_MEMO: usize = 1 << 16;
/// Most bytes accepted after a layer tar's end-of-archive marker.
const MAX_TRAILER: u64 = 1 << 20;
/// Path resolution work allowed in all ([`Resolver::work`], bytes of path handled): a fixed
/// allowance plus [`RESOLVE_WORK_PER_MEMBER`] per member. An ordinary image uses a few
/// hundred bytes per member; only links and replacements arranged to make every member
/// re-walk a deep path reach it, and they are then refused, not worked through.
const RESOLVE_WORK_BASE: u64 = 64 << 20;
/// See [`RESOLVE_WORK_BASE`].
const RESOLVE_WORK_PER_MEMBER: u64 = 64 << 10;

/// The file in a cache entry that records where each path came from.
const LAYERS_JSON: &str = "layers.json";

/// A root filesystem unpacked from an image, in the cache.
#[derive(Clone, Debug)]
pub struct Root {
    /// The filesystem: `CACHE/rootfs/<manifest hex>/root`.
    pub dir: PathBuf,
    /// `sha256:<hex>` of the image's manifest (docker-archive: of its config).
    pub manifest_digest: String,
    /// The layers' digests ([`crate::Layer::digest`]), lowest first.
    pub layers: Vec<String>,
    /// Whether the cache entry already existed (nothing was unpacked).
    pub reused: bool,
    /// What the caller should tell the user about this unpacking, one line each (e.g.
    /// the device files and FIFOs skipped in a layer). Empty when `reused`: a cached root
    /// does not repeat them.
    pub notes: Vec<String>,
    /// How the image's config says its application runs ([`Resolved::application`]).
    pub application: crate::Application,
    /// Path inside the root (`a/b`) → index into `layers`.
    files: HashMap<String, u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LayersJson {
    manifest_digest: String,
    layers: Vec<String>,
    /// Path inside the root (`a/b`, not valid UTF-8 parts replaced) → index into `layers`
    /// of the layer that last wrote it.
    files: BTreeMap<String, u32>,
}

impl Root {
    /// The digest of the layer that last wrote `path` (relative to the root, or absolute as
    /// the guest sees it: `/etc/passwd`), `None` if the root has no such path.
    pub fn layer_of(&self, path: impl AsRef<Path>) -> Option<&str> {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        let key = clean_name(rel)?;
        let i = *self.files.get(&key)?;
        self.layers.get(i as usize).map(String::as_str)
    }

    /// The cache entry of `entry` (`CACHE/rootfs/<hex>`), if complete.
    fn load(entry: &Path, manifest_digest: &str) -> Result<Option<Root>, OciError> {
        let json = entry.join(LAYERS_JSON);
        let bytes = match std::fs::read(&json) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(OciError::BadCacheEntry {
                    path: entry.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let bad = |reason: String| OciError::BadCacheEntry {
            path: entry.to_path_buf(),
            reason,
        };
        let l: LayersJson =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{LAYERS_JSON}: {e}")))?;
        if l.manifest_digest != manifest_digest || !entry.join("root").is_dir() {
            return Err(bad("not the entry of this manifest".into()));
        }
        Ok(Some(Root {
            dir: entry.join("root"),
            manifest_digest: l.manifest_digest,
            layers: l.layers,
            reused: true,
            notes: Vec::new(),
            application: crate::Application::default(),
            files: l.files.into_iter().collect(),
        }))
    }
}

/// The root filesystem of `resolved` (found in `source`), from the cache under `cache_root`
/// or unpacked into it: see the crate docs.
pub fn unpack(resolved: &Resolved, source: &Source, cache_root: &Path) -> Result<Root, OciError> {
    let image = source.path.as_path();
    let hex = sha256_hex(&resolved.manifest_digest).ok_or_else(|| OciError::Unsupported {
        image: image.to_path_buf(),
        member: format!("manifest digest \"{}\"", escape(&resolved.manifest_digest)),
        what: "a digest other than sha256:<64 lower-case hex digits>".into(),
    })?;
    let entries = cache_root.join("rootfs");
    let entry = entries.join(hex);
    if let Some(mut root) = Root::load(&entry, &resolved.manifest_digest)? {
        root.application = resolved.application.clone();
        return Ok(root);
    }
    let tmp = cache_root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(write_error(image, &tmp))?;
    std::fs::create_dir_all(&entries).map_err(write_error(image, &entries))?;
    let staged =
        nanoimg_atomic::TempDir::in_dir(&tmp, "rootfs-").map_err(write_error(image, &tmp))?;
    let root_dir = staged.path().join("root");
    std::fs::create_dir(&root_dir).map_err(write_error(image, &root_dir))?;

    let (notes, files) = unpack_layers(resolved, image, &root_dir)?;
    let layers: Vec<String> = resolved.layers.iter().map(|l| l.digest.clone()).collect();
    let json = LayersJson {
        manifest_digest: resolved.manifest_digest.clone(),
        layers: layers.clone(),
        files,
    };
    write_layers_json(image, staged.path(), &json)?;
    // Another process may have got there first: keep its entry.
    if let Err(e) = staged.persist(&entry) {
        return match Root::load(&entry, &resolved.manifest_digest)? {
            Some(root) => Ok(Root {
                application: resolved.application.clone(),
                ..root
            }),
            None => Err(write_error(image, &entry)(e)),
        };
    }
    Ok(Root {
        dir: entry.join("root"),
        manifest_digest: resolved.manifest_digest.clone(),
        layers,
        reused: false,
        notes,
        application: resolved.application.clone(),
        files: json.files.into_iter().collect(),
    })
}

/// The error of writing `path` (while unpacking `image`) failing.
fn write_error(image: &Path, path: &Path) -> impl Fn(io::Error) -> OciError {
    let image = image.to_path_buf();
    let path = path.to_path_buf();
    move |source| OciError::Write {
        image: image.clone(),
        path: path.clone(),
        source,
    }
}

/// Applies `resolved`'s layers, lowest first, into the empty folder `root_dir`: gives the
/// notes for the user ([`Root::notes`]) and the paths of the finished root with their layers.
fn unpack_layers(
    resolved: &Resolved,
    image: &Path,
    root_dir: &Path,
) -> Result<(Vec<String>, BTreeMap<String, u32>), OciError> {
    let store = Store::open(image)?;
    let mut u = Unpacker {
        image,
        root: root_dir,
        files: HashMap::new(),
        dir_modes: HashMap::new(),
        members: 0,
        total: 0,
        resolve_work: 0,
        resolver: Resolver::new(root_dir),
        direct: BTreeSet::new(),
        linked: HashMap::new(),
        notes: Vec::new(),
    };
    for i in 0..resolved.layers.len() {
        u.apply_layer(&store, resolved, i).map_err(|e| match e {
            Failure::Oci(e) => e,
            Failure::Io(path, source) => OciError::Write {
                image: image.to_path_buf(),
                path,
                source,
            },
        })?;
    }
    let notes = std::mem::take(&mut u.notes);
    let files = u.finish().map_err(|(p, e)| write_error(image, &p)(e))?;
    Ok((notes, files))
}

/// Writes `json` as the [`LAYERS_JSON`] of the cache entry being staged in `staged`.
fn write_layers_json(image: &Path, staged: &Path, json: &LayersJson) -> Result<(), OciError> {
    let json_path = staged.join(LAYERS_JSON);
    let bytes = serde_json::to_vec(json)
        .map_err(|e| write_error(image, &json_path)(io::Error::other(e)))?;
    std::fs::write(&json_path, bytes).map_err(write_error(image, &json_path))
}

enum Failure {
    Oci(OciError),
    /// Writing this path (absolute) failed.
    Io(PathBuf, io::Error),
}

impl From<OciError> for Failure {
    fn from(e: OciError) -> Failure {
        Failure::Oci(e)
    }
}

struct Unpacker<'a> {
    image: &'a Path,
    root: &'a Path,
    /// Path inside the root → the layer that last wrote it.
    files: HashMap<PathBuf, u32>,
    /// Folder inside the root → its mode in the layer that last wrote it.
    dir_modes: HashMap<PathBuf, u32>,
    members: usize,
    total: u64,
    /// Resolution work of resolvers already replaced ([`RESOLVE_WORK_BASE`]).
    resolve_work: u64,
    /// Resolves member parents inside the root (links followed, `..` kept in), memoised.
    resolver: Resolver,
    /// Member parent paths (as written in the tar) that are real folders, with no link on
    /// the way: only removing one of them or a folder above changes that, so a removal
    /// forgets just the paths under it (a deep folder stays known however often the layer
    /// replaces links elsewhere).
    direct: BTreeSet<PathBuf>,
    /// Member parent paths that resolved through links → the real folder; forgotten with
    /// the resolver's memo.
    linked: HashMap<PathBuf, PathBuf>,
    /// [`Root::notes`].
    notes: Vec<String>,
}

/// What one layer has done so far.
#[derive(Default)]
struct LayerState {
    /// Paths (real, inside the root) this layer wrote.
    this: HashSet<PathBuf>,
    /// The folders above them (real paths): folders with something of this layer inside.
    above: HashSet<PathBuf>,
    /// Folders this layer made opaque (pruned), directly or as part of an ancestor's
    /// prune: what is in them now was written by this layer, so they need no second prune.
    opaque: HashSet<PathBuf>,
    /// Device files and FIFOs skipped, and the first one's name (escaped).
    skipped: usize,
    first_skipped: Option<String>,
}

impl LayerState {
    /// Records that this layer wrote `path`.
    fn wrote(&mut self, path: &Path) {
        self.this.insert(path.to_path_buf());
        let mut up = path.parent();
        while let Some(dir) = up.filter(|d| !d.as_os_str().is_empty()) {
            if !self.above.insert(dir.to_path_buf()) {
                break; // and so are its ancestors
            }
            up = dir.parent();
        }
    }

    /// The note for the user about the device files and FIFOs skipped in layer `digest`, if
    /// any were.
    fn skipped_note(&self, digest: &str) -> Option<String> {
        if self.skipped == 0 {
            return None;
        }
        Some(format!(
            "skipped {} in layer {digest}: Nanos has no use for them (first: {})",
            match self.skipped {
                1 => "1 device file or FIFO".to_string(),
                n => format!("{n} device files and FIFOs"),
            },
            self.first_skipped.as_deref().unwrap_or_default(),
        ))
    }
}

/// What `resolve_parent` found.
enum Parent {
    Dir(PathBuf),
    Missing,
}

impl Unpacker<'_> {
    /// Applies layer `index` of `resolved` (read from `store`), then checks its blob's size
    /// and digests.
    fn apply_layer(
        &mut self,
        store: &Store,
        resolved: &Resolved,
        index: usize,
    ) -> Result<(), Failure> {
        let image = self.image;
        let layer = &resolved.layers[index];
        let member = &escape(&layer.member);
        let reader = open_layer(store, image, layer, member)?;
        let corrupt = |reason: String| {
            Failure::Oci(OciError::Corrupt {
                image: image.to_path_buf(),
                member: member.clone(),
                reason,
            })
        };
        let mut blob = Hashing::new(reader);
        let mut buffered = BufReader::with_capacity(1 << 20, &mut blob);
        let decoder = decompressor(&mut buffered, image, member, &corrupt)?;
        let mut content = Hashing::new(decoder);
        let applied = self.apply_tar(&mut content, index, &layer.digest, &corrupt);
        let (diff_id, _) = content.finish();
        // Read the rest of the blob, so that a damaged one is reported as such even when
        // its damage first showed as bad compressed data or a bad tar.
        let tail = io::copy(&mut buffered, &mut io::sink());
        drop(buffered);
        let (digest, read) = blob.finish();
        let read = LayerRead {
            applied,
            tail,
            digest,
            read,
            diff_id,
        };
        read.check(image, member, layer, resolved.format, &corrupt)
    }

    /// Applies the layer tar `content` (layer `index`, digest `digest`) member by member,
    /// then checks what follows its end; notes the device files and FIFOs it skipped.
    fn apply_tar<R: Read>(
        &mut self,
        content: &mut Hashing<R>,
        index: usize,
        digest: &str,
        corrupt: &dyn Fn(String) -> Failure,
    ) -> Result<(), Failure> {
        let image = self.image;
        let mut state = LayerState::default();
        {
            let mut archive = tarball::Reader::new(Streamed(&mut *content));
            loop {
                let entry = match archive.next() {
                    Ok(Some(entry)) => entry,
                    Ok(None) => break,
                    Err(e) => return Err(tar_failure(image, digest, e, corrupt)),
                };
                self.apply_entry(entry, &mut archive, index, &mut state, digest, corrupt)?;
            }
        }
        content
            .drain(MAX_TRAILER)
            .map_err(|e| corrupt(format!("after the tar: {e}")))?;
        if let Some(note) = state.skipped_note(digest) {
            self.notes.push(note);
        }
        Ok(())
    }

    /// Applies one member of layer `layer` (digest `digest`), its data read from `data`:
    /// checks its path, then applies it as a whiteout or writes it at its real path.
    fn apply_entry(
        &mut self,
        entry: tarball::Member,
        data: &mut dyn Read,
        layer: usize,
        state: &mut LayerState,
        digest: &str,
        corrupt: &dyn Fn(String) -> Failure,
    ) -> Result<(), Failure> {
        let image = self.image;
        let raw = PathBuf::from(OsString::from_vec(entry.path));
        let name = escape(&raw.to_string_lossy());
        let refuse = |reason: &str| {
            Failure::Oci(OciError::Unsafe {
                image: image.to_path_buf(),
                layer: digest.to_string(),
                member: name.clone(),
                reason: reason.to_string(),
            })
        };
        let rel = self.member_path(&raw, &refuse)?;
        let Some(file_name) = rel.file_name().map(OsString::from) else {
            return Ok(()); // the root itself
        };
        let header = &entry.header;
        let kind = header.entry_type();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fname = file_name.to_string_lossy();
        if let Some(hidden) = fname.strip_prefix(".wh.") {
            return self.whiteout(parent, &file_name, hidden, layer, state, &refuse);
        }
        let link = link_target(entry.link.as_deref(), &refuse)?;
        let Parent::Dir(dir) = self.resolve_parent(parent, true, layer, state, &refuse)? else {
            return Err(refuse("its parent is missing"));
        };
        let dest_rel = dir.join(&file_name);
        let mode = header.mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                let dest = self.root.join(&dest_rel);
                let is_dir = dest.symlink_metadata().is_ok_and(|m| m.is_dir());
                if !is_dir {
                    self.remove(&dest_rel)?;
                    std::fs::create_dir(&dest).map_err(|e| Failure::Io(dest.clone(), e))?;
                }
                self.dir_modes.insert(dest_rel.clone(), mode);
                self.remember_parent(rel, dest_rel.clone());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.write_file(entry.size, data, &dest_rel, mode, &name, corrupt)?;
            }
            tar::EntryType::Symlink => self.write_symlink(link, &dest_rel, &refuse)?,
            tar::EntryType::Link => {
                if !self.write_hard_link(link, &dest_rel, layer, state, &refuse)? {
                    return Ok(()); // a link to itself: nothing to do
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                // Nanos has no use for them, and they cannot be made without root: what
                // lower layers had at the path goes (the member replaces it), nothing is made.
                self.remove(&dest_rel)?;
                state.skipped += 1;
                state.first_skipped.get_or_insert_with(|| name.clone());
                return Ok(());
            }
            _ => return Err(refuse("not a regular file, folder or link")),
        }
        state.wrote(&dest_rel);
        self.files.insert(dest_rel, layer as u32);
        Ok(())
    }

    /// Counts member `raw` against [`MAX_MEMBERS`] and checks its path (length, NUL bytes,
    /// staying inside the root): gives it relative to the root, without `.`.
    fn member_path(
        &mut self,
        raw: &Path,
        refuse: &dyn Fn(&str) -> Failure,
    ) -> Result<PathBuf, Failure> {
        self.members += 1;
        if self.members > MAX_MEMBERS {
            return Err(OciError::TooLarge {
                image: self.image.to_path_buf(),
                reason: format!("more than {MAX_MEMBERS} members in all layers"),
            }
            .into());
        }
        if raw.as_os_str().len() > MAX_PATH {
            return Err(refuse("path longer than 4096 bytes"));
        }
        if raw.as_os_str().as_bytes().contains(&0) {
            return Err(refuse("a NUL byte in its name"));
        }
        relative(raw).ok_or_else(|| refuse("absolute path or .. component"))
    }

    /// Applies the whiteout `file_name` (`.wh.<hidden>`) found in member folder `parent`:
    /// an opaque folder's prune, or the removal of what lower layers had at the hidden path.
    fn whiteout(
        &mut self,
        parent: &Path,
        file_name: &OsStr,
        hidden: &str,
        layer: usize,
        state: &mut LayerState,
        refuse: &dyn Fn(&str) -> Failure,
    ) -> Result<(), Failure> {
        let Parent::Dir(dir) = self.resolve_parent(parent, false, layer, state, refuse)? else {
            return Ok(()); // nothing below to hide
        };
        if hidden == ".wh..opq" {
            self.prune(&dir, state)?;
        } else if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(refuse("a whiteout of nothing"));
        } else {
            let target = dir.join(OsStr::from_bytes(&file_name.as_bytes()[4..]));
            if state.above.contains(&target) {
                // This layer put things inside: only what lower layers had there goes.
                self.prune(&target, state)?;
            } else if !state.this.contains(&target) {
                self.remove(&target)?;
            }
        }
        Ok(())
    }

    /// Writes the regular file `dest_rel` (member `name`, escaped) with `mode` from its
    /// `size` bytes of `data`, once they are counted against [`MAX_FILE`] and [`MAX_TOTAL`].
    fn write_file(
        &mut self,
        size: u64,
        data: &mut dyn Read,
        dest_rel: &Path,
        mode: u32,
        name: &str,
        corrupt: &dyn Fn(String) -> Failure,
    ) -> Result<(), Failure> {
        let image = self.image;
        if size > MAX_FILE {
            return Err(OciError::TooLarge {
                image: image.to_path_buf(),
                reason: format!("{name} is {size} bytes, more than {MAX_FILE}"),
            }
            .into());
        }
        self.total += size;
        if self.total > MAX_TOTAL {
            return Err(OciError::TooLarge {
                image: image.to_path_buf(),
                reason: format!("more than {MAX_TOTAL} bytes of files in all"),
            }
            .into());
        }
        self.remove(dest_rel)?;
        let dest = self.root.join(dest_rel);
        let io_err = |e| Failure::Io(dest.clone(), e);
        // create_new: never through a link at the destination.
        let mut out: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(io_err)?;
        let mut copied = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = data
                .read(&mut buf)
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(io_err)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(corrupt(format!(
                "{name} ends after {copied} of {size} bytes"
            )));
        }
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_err)
    }

    /// Makes `dest_rel` a symbolic link to `link`, unless it already is one.
    fn write_symlink(
        &mut self,
        link: Option<PathBuf>,
        dest_rel: &Path,
        refuse: &dyn Fn(&str) -> Failure,
    ) -> Result<(), Failure> {
        let target = link.ok_or_else(|| refuse("a symbolic link without a target"))?;
        let dest = self.root.join(dest_rel);
        // The same link again (upper layers often repeat them) changes nothing, and
        // keeps what was resolved through it.
        if std::fs::read_link(&dest).ok().as_ref() != Some(&target) {
            self.remove(dest_rel)?;
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| Failure::Io(dest.clone(), e))?;
        }
        Ok(())
    }

    /// Makes `dest_rel` a hard link to the file `link` names (inside the root, as this
    /// layer sees it); `false` if that is `dest_rel` itself (nothing done).
    fn write_hard_link(
        &mut self,
        link: Option<PathBuf>,
        dest_rel: &Path,
        layer: usize,
        state: &mut LayerState,
        refuse: &dyn Fn(&str) -> Failure,
    ) -> Result<bool, Failure> {
        let target = link.ok_or_else(|| refuse("a hard link without a target"))?;
        let target = target.strip_prefix("/").unwrap_or(&target);
        let target_rel = relative(target)
            .filter(|t| t.file_name().is_some())
            .ok_or_else(|| refuse("a hard link leaving the root"))?;
        let t_parent = target_rel.parent().unwrap_or(Path::new(""));
        let Parent::Dir(t_dir) = self.resolve_parent(t_parent, false, layer, state, refuse)? else {
            return Err(refuse("a hard link to a missing file"));
        };
        let t_rel = t_dir.join(target_rel.file_name().unwrap_or_default());
        if t_rel == dest_rel {
            return Ok(false);
        }
        let t_abs = self.root.join(&t_rel);
        match t_abs.symlink_metadata() {
            Ok(m) if !m.is_dir() => {}
            Ok(_) => return Err(refuse("a hard link to a folder")),
            Err(_) => return Err(refuse("a hard link to a missing file")),
        }
        self.remove(dest_rel)?;
        let dest = self.root.join(dest_rel);
        // linkat without AT_SYMLINK_FOLLOW: a link to a symbolic link stays one.
        std::fs::hard_link(&t_abs, &dest).map_err(|e| Failure::Io(dest.clone(), e))?;
        Ok(true)
    }

    /// The real folder (inside the root) that `parent` names, following symbolic links
    /// inside the root ([`Resolver`]); missing folders are created if `create` (and
    /// recorded as this layer's), else `Parent::Missing`.
    fn resolve_parent(
        &mut self,
        parent: &Path,
        create: bool,
        layer: usize,
        state: &mut LayerState,
        refuse: &dyn Fn(&str) -> Failure,
    ) -> Result<Parent, Failure> {
        if parent.as_os_str().is_empty() {
            return Ok(Parent::Dir(PathBuf::new()));
        }
        if self.direct.contains(parent) {
            return Ok(Parent::Dir(parent.to_path_buf()));
        }
        if let Some(real) = self.linked.get(parent) {
            return Ok(Parent::Dir(real.clone()));
        }
        let Unpacker {
            root,
            files,
            resolver,
            ..
        } = self;
        let mut make = |real: &Path| -> io::Result<()> {
            std::fs::create_dir(root.join(real))?;
            state.wrote(real);
            files.insert(real.to_path_buf(), layer as u32);
            Ok(())
        };
        let missing = if create {
            Missing::Create(&mut make)
        } else {
            Missing::Fail
        };
        let resolved = resolver.resolve_relative(parent, Follow::Folder, missing);
        let work = self.resolve_work + self.resolver.work();
        let allowed = RESOLVE_WORK_BASE + RESOLVE_WORK_PER_MEMBER * self.members as u64;
        if work > allowed {
            return Err(OciError::TooLarge {
                image: self.image.to_path_buf(),
                reason: format!(
                    "resolving member paths through links took {work} bytes of path work after {} members, more than the {allowed} allowed (links and replacements arranged to re-walk deep paths)",
                    self.members
                ),
            }
            .into());
        }
        match resolved {
            Ok(real) => {
                self.remember_parent(parent.to_path_buf(), real.clone());
                Ok(Parent::Dir(real))
            }
            Err(ChrootError::NotFound { .. }) if !create => Ok(Parent::Missing),
            Err(ChrootError::NotFound { .. }) => Err(refuse("its parent is missing")),
            Err(ChrootError::TooManyLinks { .. }) => Err(refuse(&format!(
                "more than {MAX_LINKS} symbolic links on its path"
            ))),
            Err(ChrootError::NotAFolder { .. }) => Err(refuse("its parent is not a folder")),
            Err(ChrootError::Io { at, source, .. }) => Err(Failure::Io(
                self.root.join(at.trim_start_matches('/')),
                source,
            )),
        }
    }

    /// Remembers that the member path `raw` is the real folder `real`.
    fn remember_parent(&mut self, raw: PathBuf, real: PathBuf) {
        // A real path is made of folders only, so if it is the path as written, no link
        // was on the way.
        if raw == real {
            if self.direct.len() >= MAX_PARENTS_MEMO {
                self.direct = BTreeSet::new();
            }
            self.direct.insert(raw);
        } else {
            if self.linked.len() >= MAX_PARENTS_MEMO {
                self.linked = HashMap::new();
            }
            self.linked.insert(raw, real);
        }
    }

    /// Forgets the resolutions the removal of these folders or links (real paths) may have
    /// changed: the resolver's memo and the parents found through links, all of them (a
    /// new resolver rather than `Resolver::forget`, which keeps its table's capacity, so
    /// that many forgets after a large memo cost nothing each); of the direct parents, those
    /// under a removed path (they sort right after it).
    fn forget(&mut self, removed: &[PathBuf]) {
        if removed.is_empty() {
            return;
        }
        self.resolve_work += self.resolver.work();
        self.resolver = Resolver::new(self.root);
        self.linked = HashMap::new();
        for gone in removed {
            let under: Vec<PathBuf> = self
                .direct
                .range(gone.clone()..)
                .take_while(|p| p.starts_with(gone))
                .cloned()
                .collect();
            for p in under {
                self.direct.remove(&p);
            }
        }
    }

    /// Removes whatever is at `rel` (inside the root; a folder with its content), never
    /// following a link; forgets resolutions if it was a folder or link.
    fn remove(&mut self, rel: &Path) -> Result<(), Failure> {
        if remove_any(&self.root.join(rel))? {
            self.forget(&[rel.to_path_buf()]);
        }
        Ok(())
    }

    /// Removes from folder `dir` (inside the root) all that this layer did not write (a
    /// folder holding something this layer wrote is pruned in turn, not removed); at most
    /// once per folder and layer (see [`LayerState::opaque`]).
    fn prune(&mut self, dir: &Path, state: &mut LayerState) -> Result<(), Failure> {
        if !state.opaque.insert(dir.to_path_buf()) {
            return Ok(());
        }
        let abs = self.root.join(dir);
        let mut below = Vec::new();
        let mut removed = Vec::new();
        for child in std::fs::read_dir(&abs).map_err(|e| Failure::Io(abs.clone(), e))? {
            let child = child.map_err(|e| Failure::Io(abs.clone(), e))?;
            let rel = dir.join(child.file_name());
            if state.above.contains(&rel) {
                below.push(rel);
            } else if !state.this.contains(&rel) {
                if remove_any(&child.path())? {
                    removed.push(rel);
                }
            } else if child
                .file_type()
                .map_err(|e| Failure::Io(child.path(), e))?
                .is_dir()
            {
                below.push(rel);
            }
        }
        self.forget(&removed);
        for rel in below {
            self.prune(&rel, state)?;
        }
        Ok(())
    }

    /// Sets folders' modes (owner rwx kept) and lists the paths of the finished root
    /// with their layers.
    fn finish(self) -> Result<BTreeMap<String, u32>, (PathBuf, io::Error)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            let abs = self.root.join(&dir);
            let list = std::fs::read_dir(&abs).map_err(|e| (abs.clone(), e))?;
            for child in list {
                let child = child.map_err(|e| (abs.clone(), e))?;
                let rel = dir.join(child.file_name());
                if let Some(&layer) = self.files.get(&rel) {
                    out.insert(rel.to_string_lossy().into_owned(), layer);
                }
                if child.file_type().map_err(|e| (child.path(), e))?.is_dir() {
                    stack.push(rel);
                }
            }
        }
        for (dir, mode) in &self.dir_modes {
            let abs = self.root.join(dir);
            if abs.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| (abs.clone(), e))?;
            }
        }
        Ok(out)
    }
}

/// A member path as a relative path without `.`; `None` if absolute or with `..`.
fn relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Opens the blob of `layer` (its member escaped: `member`) in `store` and checks its size
/// against the manifest's.
fn open_layer(
    store: &Store,
    image: &Path,
    layer: &Layer,
    member: &str,
) -> Result<Box<dyn Read>, Failure> {
    let (reader, size) =
        store
            .member(image, &layer.member)?
            .ok_or_else(|| OciError::MissingBlob {
                image: image.to_path_buf(),
                member: member.to_string(),
            })?;
    if size != layer.size {
        return Err(OciError::Size {
            image: image.to_path_buf(),
            member: member.to_string(),
            expected: layer.size,
            actual: size,
        }
        .into());
    }
    Ok(reader)
}

/// The tar in the layer blob `buffered` (its member escaped: `member`): decompressed if
/// gzip, as it is otherwise; a zstd-compressed layer is refused.
fn decompressor<'b, R: BufRead + 'b>(
    buffered: &'b mut R,
    image: &Path,
    member: &str,
    corrupt: &dyn Fn(String) -> Failure,
) -> Result<Box<dyn Read + 'b>, Failure> {
    let head = buffered
        .fill_buf()
        .map_err(|e| corrupt(format!("unreadable: {e}")))?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            return Err(OciError::Unsupported {
                image: image.to_path_buf(),
                member: member.to_string(),
                what: "a zstd-compressed layer (convert the image with `skopeo copy --dest-compress-format gzip`)".into(),
            }
            .into())
        }
        _ => Box::new(buffered),
    })
}

/// What reading one layer's blob to its end gave.
struct LayerRead {
    /// Applying its tar ([`Unpacker::apply_tar`]).
    applied: Result<(), Failure>,
    /// Reading the rest of the blob after the compressed data.
    tail: io::Result<u64>,
    /// `sha256:<hex>` of the blob as read.
    digest: String,
    /// Bytes of the blob read.
    read: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    diff_id: String,
}

impl LayerRead {
    /// The layer's failure, if any: the tar's or the tail's when the blob is sound (its
    /// size and, but in a docker-archive, its digest as the manifest says), else the blob's
    /// size or digest; then the uncompressed tar's digest against the config's `diff_id`.
    fn check(
        self,
        image: &Path,
        member: &str,
        layer: &Layer,
        format: Format,
        corrupt: &dyn Fn(String) -> Failure,
    ) -> Result<(), Failure> {
        let LayerRead {
            applied,
            tail,
            digest,
            read,
            diff_id,
        } = self;
        let blob_ok =
            read == layer.size && (format == Format::DockerArchive || digest == layer.digest);
        match (applied, tail) {
            (Ok(()), Ok(_)) => {}
            (Err(e), _) if blob_ok => return Err(e),
            (Ok(_), Err(e)) if blob_ok => {
                return Err(corrupt(format!("after the compressed data: {e}")))
            }
            _ => {}
        }
        if read != layer.size {
            return Err(OciError::Size {
                image: image.to_path_buf(),
                member: member.to_string(),
                expected: layer.size,
                actual: read,
            }
            .into());
        }
        if format != Format::DockerArchive && digest != layer.digest {
            return Err(OciError::Digest {
                image: image.to_path_buf(),
                member: member.to_string(),
                expected: layer.digest.clone(),
                actual: digest,
            }
            .into());
        }
        if let Some(expected) = &layer.diff_id {
            if &diff_id != expected {
                return Err(OciError::Digest {
                    image: image.to_path_buf(),
                    member: format!("{member} (uncompressed, the config's diff_id)"),
                    expected: expected.clone(),
                    actual: diff_id,
                }
                .into());
            }
        }
        Ok(())
    }
}

/// A member's link target as a path; refused if longer than [`MAX_PATH`] or with a NUL byte.
fn link_target(
    link: Option<&[u8]>,
    refuse: &dyn Fn(&str) -> Failure,
) -> Result<Option<PathBuf>, Failure> {
    match link {
        Some(l) if l.len() > MAX_PATH => Err(refuse("a link target longer than 4096 bytes")),
        Some(l) if l.contains(&0) => Err(refuse("a NUL byte in its link target")),
        Some(l) => Ok(Some(PathBuf::from(OsStr::from_bytes(l)))),
        None => Ok(None),
    }
}

/// Removes whatever is at `p` (a folder with its content), never following a link; gives
/// whether it was a folder or a symbolic link (so resolutions through it are stale).
fn remove_any(p: &Path) -> Result<bool, Failure> {
    let r = match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map(|()| true),
        Ok(m) => std::fs::remove_file(p).map(|()| m.file_type().is_symlink()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    };
    r.map_err(|e| Failure::Io(p.to_path_buf(), e))
}

/// A layer's tar that cannot be read on: an oversized extension header or a sparse member
/// is refused as unsafe, anything else is a corrupt layer.
fn tar_failure(
    image: &Path,
    layer: &str,
    e: TarError,
    corrupt: &dyn Fn(String) -> Failure,
) -> Failure {
    let unsafe_member = |member: String, reason: String| {
        Failure::Oci(OciError::Unsafe {
            image: image.to_path_buf(),
            layer: layer.to_string(),
            member,
            reason,
        })
    };
    match e {
        TarError::Oversized {
            member,
            what,
            size,
            limit,
        } => unsafe_member(
            member,
            format!("{what} claiming {size} bytes, more than the {limit} allowed"),
        ),
        TarError::Sparse { member } => {
            unsafe_member(member, "a GNU sparse file (not supported)".into())
        }
        e => corrupt(format!("not a readable tar: {e}")),
    }
}
