//! The CycloneDX 1.5 JSON document: the same content as [`crate::spdx`].
//!
//! `metadata.component` is the image (SHA-256). `components` holds the Nanos release
//! (`operating-system`, with the kernel and klibs as its nested `file` components), each
//! container image used as a root (`container`, `pkg:oci/…`), each distribution package
//! owning packed files (`library`, `pkg:deb/…`, license when known, its files nested), and
//! the other files. Each file has its SHA-256 and SHA-1 and `nanoimg:*` properties: the
//! filesystem, the size, and where it came from (`nanoimg:source` host path, or
//! `nanoimg:image`, `nanoimg:layer`, `nanoimg:path` for a container image's root).
//! `serialNumber` is a `urn:uuid:` derived from the image's SHA-256.

use serde_json::{json, Value};

use crate::{Description, File, Origin};

/// A version-5-shaped UUID made of the image's SHA-256 (the first 16 bytes, with the
/// version and variant bits set): the same image, the same serial number.
pub fn serial_number(image_sha256: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("nanoimg-cyclonedx:{image_sha256}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::hex(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn file_component(d: &Description, f: &File) -> Value {
    let mut props = vec![
        json!({"name": "nanoimg:filesystem", "value": f.filesystem}),
        json!({"name": "nanoimg:size", "value": f.size.to_string()}),
    ];
    match &f.origin {
        Origin::Host(p) => props.push(json!({"name": "nanoimg:source", "value": p})),
        Origin::Generated => props.push(json!({"name": "nanoimg:source", "value": "generated"})),
        Origin::Unrecorded => props.push(json!({"name": "nanoimg:source", "value": "unrecorded"})),
        Origin::Layer {
            container,
            path,
            layer,
        } => {
            if let Some(c) = d.containers.get(*container) {
                props.push(json!({"name": "nanoimg:image", "value": format!("{}@{}", c.reference, c.manifest_digest)}));
            }
            if let Some(l) = layer {
                props.push(json!({"name": "nanoimg:layer", "value": l}));
            }
            props.push(json!({"name": "nanoimg:path", "value": path}));
        }
    }
    json!({
        "type": "file",
        "bom-ref": format!("file:{}:{}", f.filesystem, f.path),
        "name": f.path,
        "hashes": [
            {"alg": "SHA-1", "content": f.sha1},
            {"alg": "SHA-256", "content": f.sha256},
        ],
        "properties": props,
    })
}

/// The document, as pretty-printed JSON with a final newline.
pub fn write(d: &Description) -> Vec<u8> {
    let files = crate::sorted_files(d);
    let mut components = Vec::new();
    let mut depends = Vec::new();
    if let Some(c) = nanos_component(d, &files) {
        components.push(c);
        depends.push(json!("nanos"));
    }
    let mut containers: Vec<&crate::Container> = d.containers.iter().collect();
    containers.sort();
    for c in containers {
        let purl = crate::container_purl(c);
        components.push(container_component(c, &purl));
        depends.push(json!(purl));
    }
    for p in crate::packages(d) {
        components.push(package_component(d, &files, p));
        depends.push(json!(p.purl));
    }
    components.extend(
        files
            .iter()
            .filter(|f| !f.is_nanos() && f.package.is_none())
            .map(|f| file_component(d, f)),
    );
    let doc = document(d, components, depends);
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The Nanos release's component, with the boot files nested; `None` when there are none.
fn nanos_component(d: &Description, files: &[&File]) -> Option<Value> {
    let boot: Vec<Value> = files
        .iter()
        .filter(|f| f.is_nanos())
        .map(|f| file_component(d, f))
        .collect();
    if boot.is_empty() {
        return None;
    }
    let mut c = json!({
        "type": "operating-system",
        "bom-ref": "nanos",
        "supplier": {"name": "NanoVMs"},
        "name": "nanos",
        "description": format!("The Nanos kernel and klibs ({})", d.nanos.arch),
        "licenses": [{"license": {"id": "Apache-2.0"}}],
        "components": boot,
    });
    if !d.nanos.version.is_empty() {
        c["version"] = json!(d.nanos.version);
    }
    if let Some(p) = crate::nanos_purl(&d.nanos) {
        c["purl"] = json!(p);
    }
    if let Some(sha) = &d.nanos.tarball_sha256 {
        c["hashes"] = json!([{"alg": "SHA-256", "content": sha}]);
    }
    if let Some(url) = &d.nanos.download {
        c["externalReferences"] = json!([{"type": "distribution", "url": url}]);
    }
    Some(c)
}

/// One container image's component; `purl` is its package URL (and `bom-ref`).
fn container_component(c: &crate::Container, purl: &str) -> Value {
    let hex = c
        .manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(&c.manifest_digest);
    json!({
        "type": "container",
        "bom-ref": purl,
        "name": c.reference,
        "version": c.manifest_digest,
        "hashes": [{"alg": "SHA-256", "content": hex}],
        "purl": purl,
    })
}

/// One distribution package's component, with the (root filesystem) files it owns nested.
fn package_component(d: &Description, files: &[&File], p: &crate::Package) -> Value {
    let owned: Vec<Value> = files
        .iter()
        .filter(|f| !f.is_nanos() && f.package.as_ref().is_some_and(|q| q.purl == p.purl))
        .map(|f| file_component(d, f))
        .collect();
    let mut c = json!({
        "type": "library",
        "bom-ref": p.purl,
        "name": p.name,
        "version": p.version,
        "purl": p.purl,
        "properties": [{"name": "nanoimg:architecture", "value": p.architecture}],
        "components": owned,
    });
    if let Some(l) = &p.license {
        c["licenses"] = json!([{"license": {"id": l}}]);
    }
    c
}

/// The whole document around `components`, the image depending on `depends`.
fn document(d: &Description, components: Vec<Value>, depends: Vec<Value>) -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial_number(&d.sha256),
        "version": 1,
        "metadata": {
            "timestamp": crate::rfc3339(d.created),
            "tools": {"components": [{
                "type": "application",
                "name": "nanoimg",
                "version": d.tool_version,
            }]},
            "component": {
                "type": "operating-system",
                "bom-ref": "image",
                "name": d.name,
                "description": "A bootable Nanos unikernel disk image built by nanoimg",
                "hashes": [{"alg": "SHA-256", "content": d.sha256}],
            },
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": depends}],
    })
}
