//! `build --provenance FILE` and `nanoimg verify IMAGE --provenance FILE`: the statement
//! (`nanoimg-provenance`) made from a build's options and report, and a rebuild from it.
//!
//! Paths are recorded as given, and host files packed relative to the working directory when
//! they are inside it, so the same build run from two folders records the same bytes;
//! `verify` reads them relative to its own working directory (run it where the build ran).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nanoimg::release::{Lock, LockedImage};
use nanoimg::{BuildError, BuildOptions, BuildReport};
use nanoimg_provenance::{
    sha256_file, BuildDefinition, ExternalParameters, ProvenanceError, ResourceDescriptor,
    Statement,
};

/// The working directory (`.` when it cannot be read).
fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// `p` relative to `cwd` when inside it, else absolute.
fn relative(p: &Path, cwd: &Path) -> String {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match abs.strip_prefix(cwd) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
        _ => abs.to_string_lossy().into_owned(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn string(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// The options of `o` that shape the image, as given.
pub fn parameters(o: &BuildOptions) -> ExternalParameters {
    ExternalParameters {
        program: string(&o.program),
        config: string(&o.config),
        args: o.args.clone(),
        envs: o.envs.clone(),
        mounts: o.mounts.clone(),
        image_name: o.image_name.clone(),
        keep_mount_ids: o.keep_mount_ids,
        uuid: o.uuid.as_ref().map(nanoimg::tfs::format_uuid),
        seed: o.seed.clone(),
        uefi: o.uefi,
        arch: o.arch.map(|a| a.ops_name().to_string()),
        from_image: o.from_image.clone(),
        target_root: string(&o.target_root),
        prune: o.prune,
        platform: o.platform.as_ref().map(ToString::to_string),
        libraries: o.libraries.clone(),
        format: o.format.map(|f| f.name().to_string()),
        nanos_version: o.kernel.nanos_version.clone(),
        kernel_dir: string(&o.kernel.kernel_dir),
        ld_library_path: o.use_ld_library_path,
        allow_unpinned: o.kernel.release.allow_unpinned,
    }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvenanceError + '_ {
    move |source| ProvenanceError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn descriptor(name: &str, uri: String, sha256: &str) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(name.into()),
        uri: Some(uri),
        digest: [("sha256".to_string(), sha256.to_string())].into(),
        ..Default::default()
    }
}

/// The statement about the image `report` describes, built with `options` (which must have
/// asked for file digests).
pub fn statement(options: &BuildOptions, report: &BuildReport) -> Result<Statement, BuildError> {
    let cwd = cwd();
    let mut deps = Vec::new();
    let program = options
        .program
        .as_deref()
        .filter(|_| options.from_image.is_none());
    if let Some(p) = program {
        let sha = sha256_file(p).map_err(read_err(p))?;
        deps.push(descriptor(
            "program",
            format!("file:{}", relative(p, &cwd)),
            &sha,
        ));
    }
    let config = config_input(options, &cwd, &mut deps)?;
    let lock_file = nanoimg::lock_path(options.kernel.lock.as_deref(), options.config.as_deref());
    let lock = Lock::load(&lock_file)?;
    // The kernel: each file of a --kernel-dir folder, or the pinned release.
    let kernel_dir = options
        .kernel
        .kernel_dir
        .as_deref()
        .and_then(|d| d.canonicalize().ok());
    let cache_root = nanoimg::cache()
        .ok()
        .and_then(|c| c.root().canonicalize().ok());
    if kernel_dir.is_some() {
        if let (Some(b), Some(sha)) = (&report.plan.boot_image, &report.boot_img_sha256) {
            deps.push(descriptor(
                "kernel-dir",
                format!("file:{}", relative(b, &cwd)),
                sha,
            ));
        }
    } else {
        deps.push(release_input(report, &lock));
    }
    // Container images, by manifest digest (as the lock records them).
    deps.extend(image_inputs(options, &config, &lock));
    // Every host file packed, but those covered above (the program, the kernel's, an
    // image's).
    let covered = Covered {
        program,
        kernel_dir: kernel_dir.as_deref(),
        cache_root: cache_root.as_deref(),
    };
    deps.extend(packed_files(report, &covered, &cwd));
    let name = report
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started_on = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|e| nanoimg_provenance::rfc3339(&e));
    Ok(Statement::new(
        &name,
        &report.file.sha256,
        parameters(options),
        deps,
        env!("CARGO_PKG_VERSION"),
        started_on,
    ))
}

/// The build's config (the default when none is given), recorded in `deps` with its content.
fn config_input(
    options: &BuildOptions,
    cwd: &Path,
    deps: &mut Vec<ResourceDescriptor>,
) -> Result<nanoimg::config::Config, BuildError> {
    let mut config = nanoimg::config::Config::default();
    if let Some(c) = &options.config {
        let bytes = std::fs::read(c).map_err(read_err(c))?;
        config = nanoimg::config::Config::load(c)?;
        let mut d = descriptor(
            "config",
            format!("file:{}", relative(c, cwd)),
            &nanoimg_provenance::sha256(&bytes),
        );
        d.content = Some(nanoimg_provenance::base64(&bytes));
        deps.push(d);
    }
    Ok(config)
}

/// The Nanos release the image's kernel came from: its URL and digest when the lock has
/// them, and annotations naming it and its kernel's and boot image's digests.
fn release_input(report: &BuildReport, lock: &Lock) -> ResourceDescriptor {
    let arch = report.plan.arch;
    let mut d = match lock.release(&report.nanos_version, arch) {
        Some(r) => descriptor("nanos", r.url.clone(), &r.sha256),
        None => ResourceDescriptor {
            name: Some("nanos".into()),
            ..Default::default()
        },
    };
    let name = nanoimg::release::release_name(&report.nanos_version, arch);
    d.annotations.insert("release".into(), name);
    d.annotations
        .insert("version".into(), report.nanos_version.clone());
    d.annotations
        .insert("arch".into(), arch.ops_name().to_string());
    let pinned = nanoimg::release::find_pin(&report.nanos_version, arch).is_some();
    d.annotations.insert("pinned".into(), pinned.to_string());
    if let Some(k) = &report.kernel_sha256 {
        d.annotations.insert("kernelSha256".into(), k.clone());
    }
    if let Some(b) = &report.boot_img_sha256 {
        d.annotations.insert("bootImgSha256".into(), b.clone());
    }
    d
}

/// The target root and --from-image container images: one input per platform the lock
/// records each for, by manifest digest.
fn image_inputs(
    options: &BuildOptions,
    config: &nanoimg::config::Config,
    lock: &Lock,
) -> Vec<ResourceDescriptor> {
    let mut deps = Vec::new();
    let target_spec = string(&options.target_root).or(config.target_root.clone());
    for (name, spec) in [
        ("target-root", target_spec),
        ("from-image", options.from_image.clone()),
    ] {
        let Some(spec) = spec else { continue };
        for image in lock.images.iter().filter(|i| i.source == spec) {
            let hex = image
                .digest
                .strip_prefix("sha256:")
                .unwrap_or(&image.digest);
            let mut d = descriptor(name, spec.clone(), hex);
            d.annotations
                .insert("platform".into(), image.platform.clone());
            deps.push(d);
        }
    }
    deps
}

/// What the statement records apart from the packed host files: the program, a
/// --kernel-dir folder and the cache (both canonical).
struct Covered<'a> {
    program: Option<&'a Path>,
    kernel_dir: Option<&'a Path>,
    cache_root: Option<&'a Path>,
}

/// The host files packed, as inputs in the order of the report, but those `covered` (or an
/// image root's, or the boot filesystem's from outside a --kernel-dir folder).
fn packed_files(report: &BuildReport, covered: &Covered, cwd: &Path) -> Vec<ResourceDescriptor> {
    let mut deps = Vec::new();
    for f in &report.files {
        let (Some(source), Some(sha)) = (&f.source, &f.sha256) else {
            continue;
        };
        let real = source.canonicalize().unwrap_or_else(|_| source.clone());
        let in_kernel_dir = covered.kernel_dir.is_some_and(|k| real.starts_with(k));
        if covered.program.is_some_and(|p| same_file(p, source))
            || (report.image_root && source.starts_with(&report.target_root))
            || covered.cache_root.is_some_and(|c| real.starts_with(c))
            || (f.filesystem == "boot" && !in_kernel_dir)
        {
            continue;
        }
        let name = if in_kernel_dir { "kernel-dir" } else { "file" };
        let mut d = descriptor(name, format!("file:{}", relative(source, cwd)), sha);
        if !in_kernel_dir {
            d.annotations.insert("imagePath".into(), f.path.clone());
        }
        deps.push(d);
    }
    deps
}

/// Writes the statement for a build at `path` (after the image), atomically.
pub fn write(path: &Path, options: &BuildOptions, report: &BuildReport) -> Result<(), BuildError> {
    statement(options, report)?.write(path)?;
    Ok(())
}

/// Why a statement's parameters cannot be turned back into a build.
fn bad(field: &str, value: &str) -> String {
    format!("the provenance's externalParameters.{field} {value:?} is not valid")
}

/// The build the statement records, into `output`, with the lock `lock`.
fn options(
    p: &ExternalParameters,
    output: PathBuf,
    lock: PathBuf,
    offline: bool,
    insecure: &[String],
) -> Result<BuildOptions, String> {
    fn parsed<T: std::str::FromStr>(field: &str, v: &Option<String>) -> Result<Option<T>, String> {
        v.as_ref()
            .map(|s| s.parse().map_err(|_| bad(field, s)))
            .transpose()
    }
    let arch = parsed("arch", &p.arch)?;
    let platform = parsed("platform", &p.platform)?;
    let format = parsed("format", &p.format)?;
    let uuid = p
        .uuid
        .as_ref()
        .map(|s| nanoimg::parse_uuid(s).ok_or_else(|| bad("uuid", s)))
        .transpose()?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(BuildOptions {
        program: p.program.as_ref().map(PathBuf::from),
        config: p.config.as_ref().map(PathBuf::from),
        kernel: nanoimg::KernelOptions {
            kernel_dir: p.kernel_dir.as_ref().map(PathBuf::from),
            nanos_version: p.nanos_version.clone(),
            lock: Some(lock),
            release: nanoimg::release::ReleaseOptions {
                offline,
                locked: false,
                update_lock: false,
                mirror: env("NANOIMG_MIRROR"),
                allow_unpinned: p.allow_unpinned,
                ..Default::default()
            },
        },
        output: Some(output),
        target_root: p.target_root.as_ref().map(PathBuf::from),
        use_ld_library_path: p.ld_library_path,
        args: p.args.clone(),
        envs: p.envs.clone(),
        mounts: p.mounts.clone(),
        image_name: p.image_name.clone(),
        keep_mount_ids: p.keep_mount_ids,
        uuid,
        seed: p.seed.clone(),
        uefi: p.uefi,
        arch,
        from_image: p.from_image.clone(),
        prune: p.prune,
        platform,
        libraries: p.libraries.clone(),
        format,
        file_digests: true,
        insecure_registries: insecure.to_vec(),
        images_by_locked_digest: true,
        missing_files: false,
        raw_sums: false,
    })
}

/// How a recorded input is named in messages: `the program prover`.
fn input_name(d: &ResourceDescriptor) -> String {
    let what = match d.name.as_deref() {
        Some("file") => "packed file",
        Some("kernel-dir") => "kernel folder's file",
        Some("target-root") => "target root image",
        Some("from-image") => "--from-image image",
        Some(other) => other,
        None => "input",
    };
    let at = d
        .file_path()
        .map(|p| p.display().to_string())
        .or_else(|| d.uri.clone())
        .unwrap_or_default();
    let image_path = d
        .annotations
        .get("imagePath")
        .map(|p| format!(" (image path {p})"))
        .unwrap_or_default();
    format!("the {what} {at}{image_path}")
}

fn out(text: impl std::fmt::Display) {
    println!("{}", nanoimg::printable(&text.to_string()));
}

fn fail(text: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {}", nanoimg::printable(&text.to_string()));
    ExitCode::from(2)
}

/// `nanoimg verify IMAGE --provenance FILE`: 0 rebuilt byte for byte; 1 the image is not
/// the subject, an input changed or the rebuild differs (each said, with `diff`'s
/// explanation); 2 an input is missing or the check could not be made.
pub fn verify(image: &Path, provenance: &Path, insecure: &[String]) -> ExitCode {
    rebuild_and_compare(image, provenance, insecure).unwrap_or_else(|code| code)
}

/// The steps of `verify`; an `Err` is the exit status of a check that ended it early (what
/// it found already said).
fn rebuild_and_compare(
    image: &Path,
    provenance: &Path,
    insecure: &[String],
) -> Result<ExitCode, ExitCode> {
    let statement = Statement::read(provenance).map_err(fail)?;
    let (recorded, subject) = check_subject(image, provenance, &statement)?;
    // Every input still there, and with its recorded digest.
    let definition = &statement.predicate.build_definition;
    let Changes {
        mut changed,
        changed_images,
    } = check_inputs(definition)?;
    // The rebuild, in a temporary folder removed afterwards (and on an interrupt).
    let temp = nanoimg::atomic::TempDir::in_dir(&std::env::temp_dir(), ".nanoimg-verify-")
        .map_err(|e| fail(format!("cannot create a temporary folder: {e}")))?;
    let name = Path::new(&subject)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("image"));
    let output = temp.path().join(name);
    // The lock holds the recorded images, so that they are taken from the cache by digest.
    let lock_file = temp.path().join("nanoimg.lock");
    recorded_lock(definition, &changed_images)
        .save(&lock_file)
        .map_err(fail)?;
    let report = rebuild(definition, &output, &lock_file, insecure, &changed)?;
    nanoimg::atomic::interrupt::wait_if_interrupted();
    // The release used must be the one recorded.
    changed.extend(kernel_changes(definition, &report));
    let code = compare(image, &recorded, &report, &changed);
    drop(temp);
    code
}

/// The subject's recorded sha256 and name, once `image` is seen to have that sha256 (exit
/// 1 when it has not).
fn check_subject(
    image: &Path,
    provenance: &Path,
    statement: &Statement,
) -> Result<(String, String), ExitCode> {
    let recorded = statement.subject_sha256().unwrap_or_default().to_string();
    let subject = statement
        .subject
        .iter()
        .find_map(|s| s.name.clone())
        .unwrap_or_default();
    let actual = sha256_file(image)
        .map_err(|e| fail(format!("cannot read the image {}: {e}", image.display())))?;
    if actual != recorded {
        out(format!(
            "not verified: the image {} has sha256 {actual}, the provenance {} records the subject {subject} with sha256 {recorded}",
            image.display(),
            provenance.display()
        ));
        return Err(ExitCode::from(1));
    }
    Ok((recorded, subject))
}

/// The recorded inputs found changed.
struct Changes {
    /// What changed, one message each.
    changed: Vec<String>,
    /// The local container images (as recorded) whose manifest changed.
    changed_images: Vec<String>,
}

/// Checks each recorded input: a file's sha256, a local container image's manifest digest
/// (exit 2 when one is missing).
fn check_inputs(definition: &BuildDefinition) -> Result<Changes, ExitCode> {
    let mut changes = Changes {
        changed: Vec::new(),
        changed_images: Vec::new(),
    };
    for d in &definition.resolved_dependencies {
        let recorded = d.sha256().unwrap_or_default();
        if let Some(path) = d.file_path() {
            match sha256_file(&path) {
                Ok(sha) if sha == recorded => {}
                Ok(sha) => changes.changed.push(format!(
                    "{} has sha256 {sha}, the provenance records {recorded}",
                    input_name(d)
                )),
                Err(e) => {
                    return Err(fail(format!(
                        "{} recorded in the provenance is missing: {e}",
                        input_name(d)
                    )))
                }
            }
        } else if let Some(spec) = d
            .uri
            .as_deref()
            .filter(|_| matches!(d.name.as_deref(), Some("target-root" | "from-image")))
        {
            if let Some(c) = changed_image(d, spec, recorded)? {
                changes.changed.push(c);
                changes.changed_images.push(spec.to_string());
            }
        }
    }
    Ok(changes)
}

/// Whether the local container image `spec` (input `d`) changed: the message saying how;
/// `None` for a registry's (not checked) or an unchanged one.
fn changed_image(
    d: &ResourceDescriptor,
    spec: &str,
    recorded: &str,
) -> Result<Option<String>, ExitCode> {
    if nanoimg::registry::is_reference(spec) {
        return Ok(None);
    }
    let mut source = nanoimg::oci::Source::parse(spec);
    if !source.path.exists() {
        return Err(fail(format!(
            "{} recorded in the provenance is missing: {} does not exist",
            input_name(d),
            source.path.display()
        )));
    }
    let platform = d.annotations.get("platform").and_then(|p| p.parse().ok());
    if let Some(p) = platform {
        source = source.with_platform(p);
    }
    // A local image that changed is rebuilt as it is now, to show the difference.
    if let Ok(r) = nanoimg::oci::resolve(&source) {
        let now = r.manifest_digest.trim_start_matches("sha256:").to_string();
        if now != recorded {
            return Ok(Some(format!(
                "{} has manifest sha256 {now}, the provenance records {recorded}",
                input_name(d)
            )));
        }
    }
    Ok(None)
}

/// A lock holding the recorded container images, but those in `changed_images`.
fn recorded_lock(definition: &BuildDefinition, changed_images: &[String]) -> Lock {
    let mut lock = Lock::default();
    for d in &definition.resolved_dependencies {
        if let (Some("target-root" | "from-image"), Some(uri), Some(sha), Some(platform)) = (
            d.name.as_deref(),
            &d.uri,
            d.sha256(),
            d.annotations.get("platform"),
        ) {
            if changed_images.contains(uri) {
                continue;
            }
            lock.images.push(LockedImage {
                source: uri.clone(),
                platform: platform.clone(),
                digest: format!("sha256:{sha}"),
            });
        }
    }
    lock
}

/// The rebuild the statement records, into `output`: offline first, then fetching what the
/// cache lacks. A failure is exit 1 when inputs changed (said first), else 2.
fn rebuild(
    definition: &BuildDefinition,
    output: &Path,
    lock_file: &Path,
    insecure: &[String],
    changed: &[String],
) -> Result<BuildReport, ExitCode> {
    let build = |offline| {
        options(
            &definition.external_parameters,
            output.to_path_buf(),
            lock_file.to_path_buf(),
            offline,
            insecure,
        )
        .map(|o| nanoimg::build(&o))
    };
    let result = match build(true) {
        // Not in the cache: fetched, by the digests the lock holds.
        Ok(Err(BuildError::NotCached { image, .. })) => match build(false) {
            // A recorded image neither cached nor to be had by its digest is missing.
            Ok(Err(e)) if changed.is_empty() => {
                let input = missing_image(definition, &image);
                return Err(fail(format!(
                    "{input} recorded in the provenance is missing: it is not in the cache and cannot be fetched by its digest: {e}"
                )));
            }
            other => other,
        },
        Ok(Err(BuildError::Fetch(_) | BuildError::Release(_))) => build(false),
        other => other,
    };
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if !changed.is_empty() => {
            for c in changed {
                out(c);
            }
            out(format!(
                "not verified: the rebuild failed: {}",
                nanoimg::printable(&e.to_string())
            ));
            Err(ExitCode::from(1))
        }
        Ok(Err(e)) => Err(fail(format!("the rebuild failed: {e}"))),
        Err(e) => Err(fail(e)),
    }
}

/// How the recorded input of the container image `image` is named, with its digest.
fn missing_image(definition: &BuildDefinition, image: &str) -> String {
    definition
        .resolved_dependencies
        .iter()
        .find(|d| d.uri.as_deref() == Some(image))
        .map(|d| {
            format!(
                "{} (sha256 {})",
                input_name(d),
                d.sha256().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| format!("the image {image}"))
}

/// The recorded Nanos releases whose kernel is not the one the rebuild used, one message
/// each.
fn kernel_changes(definition: &BuildDefinition, report: &BuildReport) -> Vec<String> {
    let mut changed = Vec::new();
    for d in &definition.resolved_dependencies {
        if d.name.as_deref() == Some("nanos") {
            if let (Some(want), Some(got)) =
                (d.annotations.get("kernelSha256"), &report.kernel_sha256)
            {
                if want != got {
                    changed.push(format!(
                        "the Nanos kernel of {} has sha256 {got}, the provenance records {want}",
                        d.annotations.get("release").cloned().unwrap_or_default()
                    ));
                }
            }
        }
    }
    changed
}

/// The verdict on the rebuild: verified (0), or each change said and, when the rebuild
/// differs, `diff`'s explanation (1).
fn compare(
    image: &Path,
    recorded: &str,
    report: &BuildReport,
    changed: &[String],
) -> Result<ExitCode, ExitCode> {
    if report.file.sha256 == recorded && changed.is_empty() {
        out(format!(
            "verified: rebuilt {} byte for byte",
            image.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    for c in changed {
        out(c);
    }
    if report.file.sha256 != recorded {
        out(format!(
            "not verified: the rebuild has sha256 {}, {} has {recorded}; the differences:",
            report.file.sha256,
            image.display()
        ));
        crate::look::diff(image, &report.output, false).map_err(fail)?;
    } else {
        out("not verified: inputs changed, though the rebuild is the same image");
    }
    Ok(ExitCode::from(1))
}
