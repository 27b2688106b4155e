//! A CA and member certificates laid out the way kubeadm (`pki/etcd/`) and RKE
//! (`ssl/kube-etcd-*.pem`) lay them out, so that mTLS in the lab is the real thing.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::LabError;

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

fn gen_err(e: rcgen::Error) -> LabError {
    LabError::Certs(e.to_string())
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Ca, LabError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(gen_err)?;
        let key_pem = key.serialize_pem();
        Ok(Ca { issuer: CertifiedIssuer::self_signed(params, key).map_err(gen_err)?, key_pem })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A leaf certificate. kubeadm's etcd server and peer certificates carry both server and
    /// client auth, with the node's name, `localhost` and its IPs as SANs.
    pub fn issue(&self, cn: &str, ips: &[IpAddr], server: bool, client: bool) -> Result<Pair, LabError> {
        let mut names = vec![];
        if server {
            names.push("localhost".to_string());
            names.push(cn.to_string());
        }
        let mut params = CertificateParams::new(names).map_err(gen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        if server {
            for ip in ips {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
            params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let mut eku = vec![];
        if server {
            eku.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            eku.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.extended_key_usages = eku;
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A client certificate signed by the CA in `ca_crt`/`ca_key` (a lab master's own, read
/// from disk), valid only from `not_before` to `not_after`: the expired and not-yet-valid
/// certificates of the fault tests.
pub fn issue_client_from(
    ca_crt: &Path,
    ca_key: &Path,
    cn: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<Pair, LabError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| LabError::io(p, e));
    let ca = KeyPair::from_pem(&read(ca_key)?).map_err(gen_err)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(ca_crt)?, ca).map_err(gen_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

pub fn write(path: &Path, contents: &str, private: bool) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| LabError::io(p, e))?;
    }
    std::fs::write(path, contents).map_err(|e| LabError::io(path, e))?;
    let mode = if private { 0o600 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| LabError::io(path, e))
}

/// kubeadm's `etc/kubernetes/pki/etcd/` for one master.
pub fn write_kubeadm(dir: &Path, ca: &Ca, node: &str, ip: IpAddr) -> Result<(), LabError> {
    write(&dir.join("ca.crt"), &ca.cert_pem(), false)?;
    write(&dir.join("ca.key"), ca.key_pem(), true)?;
    for (file, server, client, cn) in [
        ("server", true, true, node.to_string()),
        ("peer", true, true, node.to_string()),
        ("healthcheck-client", false, true, "kube-etcd-healthcheck-client".to_string()),
    ] {
        let p = ca.issue(&cn, &[ip], server, client)?;
        write(&dir.join(format!("{file}.crt")), &p.cert_pem, false)?;
        write(&dir.join(format!("{file}.key")), &p.key_pem, true)?;
    }
    Ok(())
}

/// RKE's `etc/kubernetes/ssl/`: `kube-ca.pem` and one `kube-etcd-<ip-dashed>.pem` pair used
/// for both client and peer traffic.
pub fn write_rke(dir: &Path, ca: &Ca, ip: IpAddr) -> Result<String, LabError> {
    write(&dir.join("kube-ca.pem"), &ca.cert_pem(), false)?;
    let dashed = ip.to_string().replace('.', "-");
    let p = ca.issue(&format!("kube-etcd-{dashed}"), &[ip], true, true)?;
    write(&dir.join(format!("kube-etcd-{dashed}.pem")), &p.cert_pem, false)?;
    write(&dir.join(format!("kube-etcd-{dashed}-key.pem")), &p.key_pem, true)?;
    Ok(dashed)
}
