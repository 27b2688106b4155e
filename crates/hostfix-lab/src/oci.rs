//! OCI image archives written locally, for the real containerd (issue 29): nothing can be
//! pulled here, so the pause and etcd images kubeadm names are made `FROM scratch` from
//! static binaries and imported with `ctr -n k8s.io images import`.
//!
//! The archive is an OCI image layout (image-spec `image-layout.md`) in a tar: `oci-layout`,
//! `index.json` and the blobs (one uncompressed layer, the config, the manifest). containerd
//! names the imported image from the index's `io.containerd.image.name` annotation, so the
//! tag is exactly the reference a kubeadm manifest uses. Every header is normalised (uid 0,
//! mtime 0) so the same binaries give the same digests: a re-import is then a no-op.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::LabError;

/// One image: its full reference, where each file goes, and how it starts.
#[derive(Debug, Clone)]
pub struct OciImage {
    /// `registry.k8s.io/etcd:3.6.8-0`: repository and tag, as a manifest names it.
    pub reference: String,
    /// (path in the image, file on this machine), each written mode 0755.
    pub files: Vec<(String, PathBuf)>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn append(t: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    t.append_data(&mut h, name, data)
}

impl OciImage {
    /// The tag part of the reference (`3.6.8-0`), which the index also records as
    /// `org.opencontainers.image.ref.name`.
    fn tag(&self) -> &str {
        self.reference.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/')).unwrap_or("latest")
    }

    /// The archive's bytes, and the manifest digest containerd will list for it.
    pub fn archive(&self) -> Result<(Vec<u8>, String), LabError> {
        fn io(p: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
            move |e| LabError::io(p, e)
        }
        let mut layer = tar::Builder::new(Vec::new());
        for (dest, src) in &self.files {
            let data = std::fs::read(src).map_err(io(src))?;
            append(&mut layer, dest.trim_start_matches('/'), 0o755, &data).map_err(io(src))?;
        }
        let layer = layer.into_inner().map_err(io(Path::new(&self.reference)))?;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Entrypoint": self.entrypoint, "Env": self.env },
            "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
        }))
        .expect("a JSON value serialises");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(&layer), "size": layer.len() }],
        }))
        .expect("a JSON value serialises");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest),
                "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": self.reference,
                    "org.opencontainers.image.ref.name": self.tag(),
                },
            }],
        }))
        .expect("a JSON value serialises");
        let mut out = tar::Builder::new(Vec::new());
        let whole = |e| LabError::io(Path::new(&self.reference), e);
        append(&mut out, "oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(whole)?;
        for blob in [&layer, &config, &manifest] {
            append(&mut out, &format!("blobs/sha256/{}", &digest(blob)[7..]), 0o644, blob).map_err(whole)?;
        }
        append(&mut out, "index.json", 0o644, &index).map_err(whole)?;
        Ok((out.into_inner().map_err(whole)?, digest(&manifest)))
    }

    /// Write the archive to `path` (through a temporary name, so a half-written archive is
    /// never imported) and return the manifest digest.
    pub fn write(&self, path: &Path) -> Result<String, LabError> {
        let (bytes, d) = self.archive()?;
        let part = path.with_extension("tar.part");
        let mut f = std::fs::File::create(&part).map_err(|e| LabError::io(&part, e))?;
        f.write_all(&bytes).map_err(|e| LabError::io(&part, e))?;
        std::fs::rename(&part, path).map_err(|e| LabError::io(path, e))?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path) -> OciImage {
        let bin = dir.join("pause");
        std::fs::write(&bin, b"\x7fELF not really").unwrap();
        OciImage {
            reference: "registry.k8s.io/pause:3.10.2".into(),
            files: vec![("/pause".into(), bin)],
            entrypoint: vec!["/pause".into()],
            env: vec![],
        }
    }

    #[test]
    fn an_archive_is_an_oci_layout_whose_index_names_the_image() {
        let dir = std::env::temp_dir().join(format!("hostfix-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (bytes, manifest_digest) = image(&dir).archive().unwrap();
        let mut names = vec![];
        let mut index = None;
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "index.json" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                index = Some(serde_json::from_str::<serde_json::Value>(&s).unwrap());
            }
            names.push(name);
        }
        assert_eq!(names[0], "oci-layout");
        assert_eq!(names.iter().filter(|n| n.starts_with("blobs/sha256/")).count(), 3);
        let index = index.unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], manifest_digest);
        assert_eq!(m["annotations"]["io.containerd.image.name"], "registry.k8s.io/pause:3.10.2");
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "3.10.2");
        // Same inputs, same digests: a second import of an unchanged image changes nothing.
        assert_eq!(image(&dir).archive().unwrap().1, manifest_digest);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
