//! Who may fetch sensitive metrics (values that reveal command lines, addresses, ports, file
//! names): root always; the users and groups named by `allowed_users` / `allowed_groups` in
//! `[pmda]` (every module) or in a module's section (that module). A client without
//! credentials (e.g. connected over TCP without authentication) is never allowed.

use crate::config::ConfigError;
use pcp_pmda::Client;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub uids: BTreeSet<u32>,
    pub gids: BTreeSet<u32>,
}

// The reentrant user-database calls: the agent's threads and the test harness's may look
// names up at the same time, and getpwnam's static result would be shared between them.

/// Resolves a user name (or numeric uid) to a uid.
pub fn uid_of(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero is a valid passwd (integers and null pointers).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid C string, a passwd and a buffer of the given length, an out-pointer; the
    // strings it fills in point into buf, which outlives this use.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some(pw.pw_uid)
}

/// Resolves a group name (or numeric gid) to a gid.
pub fn gid_of(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 65536];
    // SAFETY: all-zero is a valid group (integers and null pointers).
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in uid_of, for the group database.
    let r = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some(gr.gr_gid)
}

/// Every group of user `uid` (primary and supplementary), from the user database.
fn groups_of(uid: u32, primary: u32) -> Vec<u32> {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero is a valid passwd.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in uid_of.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() || pw.pw_name.is_null() {
        return vec![primary];
    }
    // SAFETY: pw_name points at a NUL-terminated string in buf.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_owned();
    let mut n: libc::c_int = 64;
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: buffer of n gids; getgrouplist writes at most n and updates n (returns -1 if
    // too small, with n the size needed).
    let r = unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut n) };
    if r < 0 {
        groups.resize(n.max(0) as usize, 0);
        // SAFETY: as above with the size the first call asked for.
        unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut n) };
    }
    groups.truncate(n.max(0) as usize);
    groups
}

impl Policy {
    /// Adds the users and groups named in `users`/`groups` (comma lists); unknown names are
    /// errors made by `err(key, message)`.
    pub fn add(
        &mut self,
        users: &[String],
        groups: &[String],
        err: impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        for u in users {
            self.uids.insert(
                uid_of(u).ok_or_else(|| err("allowed_users", format!("no such user {u:?}")))?,
            );
        }
        for g in groups {
            self.gids.insert(
                gid_of(g).ok_or_else(|| err("allowed_groups", format!("no such group {g:?}")))?,
            );
        }
        Ok(())
    }

    pub fn merged(&self, other: &Policy) -> Policy {
        Policy {
            uids: self.uids.union(&other.uids).copied().collect(),
            gids: self.gids.union(&other.gids).copied().collect(),
        }
    }

    /// Whether `client` may see sensitive values. `cache` remembers group look-ups per
    /// (uid, gid) until the configuration changes.
    pub fn allows(&self, client: &Client, cache: &mut HashMap<(u32, u32), Vec<u32>>) -> bool {
        let Some(uid) = client.uid else { return false };
        if uid == 0 || self.uids.contains(&uid) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        let gid = client.gid.unwrap_or(u32::MAX);
        if self.gids.contains(&gid) {
            return true;
        }
        let groups = cache
            .entry((uid, gid))
            .or_insert_with(|| groups_of(uid, gid));
        groups.iter().any(|g| self.gids.contains(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uid: Option<u32>, gid: Option<u32>) -> Client {
        Client {
            context: 1,
            uid,
            gid,
            ..Default::default()
        }
    }

    #[test]
    fn root_only_by_default_and_never_without_credentials() {
        let p = Policy::default();
        let mut c = HashMap::new();
        assert!(p.allows(&client(Some(0), Some(0)), &mut c));
        assert!(!p.allows(&client(Some(65534), Some(65534)), &mut c));
        assert!(!p.allows(&client(None, None), &mut c));
    }

    #[test]
    fn named_users_and_groups_are_allowed() {
        let err = |k: &str, m: String| ConfigError {
            file: "x".into(),
            line: 1,
            section: None,
            key: Some(k.into()),
            msg: m,
        };
        let mut p = Policy::default();
        p.add(&["nobody".into()], &[], err).unwrap();
        let mut c = HashMap::new();
        assert!(p.allows(&client(uid_of("nobody"), None), &mut c));
        let mut g = Policy::default();
        g.add(&[], &["nogroup".into()], err).unwrap();
        assert!(g.allows(&client(Some(65534), gid_of("nogroup")), &mut c));
        assert!(!g.allows(&client(Some(12345), Some(12345)), &mut c));
    }

    #[test]
    fn unknown_names_are_errors() {
        let mut p = Policy::default();
        let e = p
            .add(&["no-such-user-xyz".into()], &[], |k, m| ConfigError {
                file: "x".into(),
                line: 3,
                section: None,
                key: Some(k.into()),
                msg: m,
            })
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("allowed_users"));
    }
}
