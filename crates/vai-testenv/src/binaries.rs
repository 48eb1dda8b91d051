//! The control-plane binaries: where they are cached and how they are built.
//!
//! `testenv/go.mod` (at the repository root) pins `k8s.io/kubernetes` and etcd. Besides etcd,
//! kube-apiserver, kube-controller-manager and kubectl, the set holds `client-go-informer`
//! (`testenv/informer`), a client-go SharedInformer that tests point at vai, and
//! `toxiproxy-server`, the link emulator ([`crate::link`]). The binaries are
//! built from the Go module proxy with `go build` and cached outside the repository, under
//! `$VAI_TESTENV_CACHE` or `${XDG_CACHE_HOME:-~/.cache}/vai/testenv/<key>/`, where the key names
//! both versions plus a hash of `go.mod`/`go.sum` and the informer's source: a fresh clone on the
//! same machine reuses them, and any change of the pins or of the informer builds a new set.
//! Builds are serialised by a lock file, so test binaries running side by side never build twice
//! or see a half-written set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The Go module that pins the control plane (`testenv/` at the repository root).
pub const GO_MODULE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testenv");

/// Bump when the way the binaries are built changes (flags, programs), to invalidate caches.
const BUILD_RECIPE: &str = "3";

/// One binary of the set: its file name and the Go package that builds it.
const PROGRAMS: [(&str, &str); 6] = [
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    (
        "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
    ),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    ("client-go-informer", "vai.local/testenv/informer"),
    (
        "toxiproxy-server",
        "github.com/Shopify/toxiproxy/v2/cmd/server",
    ),
];

/// The Go sources of this repository's own programs, relative to [`GO_MODULE_DIR`]; they are part
/// of the cache key, so editing them rebuilds the set.
const LOCAL_SOURCES: [&str; 1] = ["informer/main.go"];

/// A complete, built set of control-plane binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    /// The pinned `k8s.io/kubernetes` version, e.g. `v1.37.2`.
    pub kubernetes_version: String,
    /// The pinned etcd server version, e.g. `v3.7.0`.
    pub etcd_version: String,
}

impl Binaries {
    /// The directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the `etcd` binary.
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// Path of the `kube-apiserver` binary.
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }

    /// Path of the `kube-controller-manager` binary.
    pub fn kube_controller_manager(&self) -> PathBuf {
        self.dir.join("kube-controller-manager")
    }

    /// Path of the `kubectl` binary.
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }

    /// Path of the `client-go-informer` binary (`testenv/informer`): a client-go SharedInformer
    /// for ConfigMaps, run as `--server http://ADDR --namespace NS`, that prints one JSON line per
    /// event on stdout: `{"event":"SYNCED"}` once its cache has synced, and for each handler call
    /// `{"event":"ADDED"|"UPDATED"|"DELETED","namespace":…,"name":…,"resourceVersion":…,"data":…}`.
    pub fn client_go_informer(&self) -> PathBuf {
        self.dir.join("client-go-informer")
    }

    /// Path of the `toxiproxy-server` binary (Toxiproxy, `github.com/Shopify/toxiproxy/v2`): a
    /// TCP proxy whose HTTP API adds latency, caps bandwidth, stalls and cuts connections.
    pub fn toxiproxy(&self) -> PathBuf {
        self.dir.join("toxiproxy-server")
    }

    /// Returns the cached set for the current pins, building it first if it is missing.
    ///
    /// `progress` receives one line per step (the build of a cold cache takes minutes).
    pub fn ensure(progress: &mut dyn FnMut(&str)) -> Result<Binaries> {
        let pins = Pins::read(Path::new(GO_MODULE_DIR))?;
        let root = cache_root()?;
        let dir = root.join(pins.key());
        let binaries = Binaries {
            dir: dir.clone(),
            kubernetes_version: pins.kubernetes.clone(),
            etcd_version: pins.etcd.clone(),
        };
        if is_complete(&dir) {
            return Ok(binaries);
        }
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let lock_path = root.join("build.lock");
        let lock = fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            progress(&format!(
                "another process is building; waiting for {}",
                lock_path.display()
            ));
            lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        }
        // Another process may have finished the build while we waited for the lock.
        if is_complete(&dir) {
            return Ok(binaries);
        }
        build(&pins, &dir, progress)?;
        Ok(binaries)
    }
}

fn is_complete(dir: &Path) -> bool {
    PROGRAMS.iter().all(|(name, _)| dir.join(name).is_file())
}

/// Builds every program into a scratch directory, then renames it into place, so a set that
/// exists is always whole.
fn build(pins: &Pins, dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let scratch = dir.with_extension(format!("partial-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let started = Instant::now();
    for (i, (name, package)) in PROGRAMS.iter().enumerate() {
        progress(&format!(
            "building {name} ({}/{}) from {package} (kubernetes {}, etcd {}); a cold build takes several minutes",
            i + 1,
            PROGRAMS.len(),
            pins.kubernetes,
            pins.etcd
        ));
        let output = Command::new("go")
            .args([
                "build",
                "-trimpath",
                "-ldflags",
                &version_ldflags(&pins.kubernetes),
                "-o",
            ])
            .arg(scratch.join(name))
            .arg(package)
            .current_dir(GO_MODULE_DIR)
            .output()
            .map_err(|e| Error::Build(format!("cannot run `go` (is Go installed?): {e}")))?;
        if !output.status.success() {
            return Err(Error::Build(format!(
                "`go build {package}` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    fs::rename(&scratch, dir).map_err(|e| Error::io(dir, e))?;
    progress(&format!(
        "built the control plane into {} in {:.0?}",
        dir.display(),
        started.elapsed()
    ));
    Ok(())
}

/// Stamps the Kubernetes binaries with their release, as the upstream build does, so `/version`
/// and `kubectl version` report `v1.x.y` rather than `v0.0.0-master`.
fn version_ldflags(kubernetes: &str) -> String {
    let mut parts = kubernetes.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
    ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
        .iter()
        .map(|pkg| {
            format!(
                "-X {pkg}.gitVersion={kubernetes} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VAI_TESTENV_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                Error::Config("neither VAI_TESTENV_CACHE, XDG_CACHE_HOME nor HOME is set".into())
            })?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("vai").join("testenv"))
}

/// The versions pinned by `testenv/go.mod`, and a hash of the module files.
#[derive(Debug)]
struct Pins {
    kubernetes: String,
    etcd: String,
    hash: String,
}

impl Pins {
    fn read(module_dir: &Path) -> Result<Pins> {
        let go_mod_path = module_dir.join("go.mod");
        let go_sum_path = module_dir.join("go.sum");
        let go_mod = fs::read_to_string(&go_mod_path).map_err(|e| Error::io(&go_mod_path, e))?;
        let go_sum = fs::read(&go_sum_path).map_err(|e| Error::io(&go_sum_path, e))?;
        let version_of = |module: &str| {
            go_mod
                .lines()
                .map(str::trim)
                .find_map(|line| {
                    let mut words = line.split_whitespace();
                    (words.next() == Some(module)).then(|| words.next())?
                })
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{} does not require {module}",
                        go_mod_path.display()
                    ))
                })
        };
        let mut hasher = Sha256::new();
        hasher.update(BUILD_RECIPE.as_bytes());
        hasher.update(go_mod.as_bytes());
        hasher.update(&go_sum);
        for source in LOCAL_SOURCES {
            let path = module_dir.join(source);
            let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            hasher.update(source.as_bytes());
            hasher.update(&text);
        }
        let hash: String = hasher.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Pins {
            kubernetes: version_of("k8s.io/kubernetes")?,
            etcd: version_of("go.etcd.io/etcd/server/v3")?,
            hash,
        })
    }

    fn key(&self) -> String {
        format!("k8s-{}_etcd-{}_{}", self.kubernetes, self.etcd, self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_name_both_versions_and_change_with_the_module_and_the_informer() {
        let dir = tempfile::tempdir().unwrap();
        let go_mod = "module x\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.7.0 // indirect\n\tk8s.io/kubernetes v1.37.2\n)\n";
        fs::write(dir.path().join("go.mod"), go_mod).unwrap();
        fs::write(dir.path().join("go.sum"), "a\n").unwrap();
        fs::create_dir(dir.path().join("informer")).unwrap();
        fs::write(dir.path().join("informer/main.go"), "package main\n").unwrap();
        let pins = Pins::read(dir.path()).unwrap();
        assert_eq!(pins.kubernetes, "v1.37.2");
        assert_eq!(pins.etcd, "v3.7.0");
        assert!(pins.key().starts_with("k8s-v1.37.2_etcd-v3.7.0_"));
        fs::write(dir.path().join("go.sum"), "b\n").unwrap();
        let after_go_sum = Pins::read(dir.path()).unwrap();
        assert_ne!(after_go_sum.key(), pins.key());
        fs::write(
            dir.path().join("informer/main.go"),
            "package main // edited\n",
        )
        .unwrap();
        assert_ne!(Pins::read(dir.path()).unwrap().key(), after_go_sum.key());
    }

    #[test]
    fn the_repository_module_pins_kubernetes_and_etcd() {
        let pins = Pins::read(Path::new(GO_MODULE_DIR)).unwrap();
        assert!(pins.kubernetes.starts_with("v1."), "{pins:?}");
        assert!(pins.etcd.starts_with("v3."), "{pins:?}");
    }
}
