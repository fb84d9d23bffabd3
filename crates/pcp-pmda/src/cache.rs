//! Instance domains: pmdaCache-backed ones (ids persist across restarts) and fixed ones.
//!
//! [`Instances`] only exists inside the PMDA's main loop (it is handed to [`crate::Agent`]
//! methods), which is how the type system keeps pmdaCache calls on the one thread
//! libpcp_pmda allows.

use crate::types::{indom_encode, IndomKind, PmdaError};
use pcp_pmda_sys as sys;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;

/// A fixed indom's table as libpcp_pmda reads it, with the names it points at kept alive.
#[derive(Default)]
pub(crate) struct FixedSet {
    pub(crate) names: Vec<CString>,
    pub(crate) ids: Vec<sys::pmdaInstid>,
}

/// Access to the agent's instance domains.
pub struct Instances {
    pub(crate) domain: u32,
    pub(crate) kinds: HashMap<u32, IndomKind>,
    pub(crate) fixed: HashMap<u32, FixedSet>,
    /// Set when a fixed table changed, so the PMDA re-points `e_indoms` at it.
    pub(crate) fixed_dirty: bool,
    pub(crate) dirty_caches: Vec<u32>,
    _main_thread_only: PhantomData<*const ()>,
}

fn cname(name: &str) -> Result<CString, PmdaError> {
    CString::new(name).map_err(|_| PmdaError::UnknownInstance)
}

impl Instances {
    pub(crate) fn new(domain: u32) -> Self {
        Instances {
            domain,
            kinds: HashMap::new(),
            fixed: HashMap::new(),
            fixed_dirty: false,
            dirty_caches: Vec::new(),
            _main_thread_only: PhantomData,
        }
    }

    pub(crate) fn raw(&self, serial: u32) -> u32 {
        indom_encode(self.domain, serial)
    }

    fn kind(&self, serial: u32) -> Option<IndomKind> {
        self.kinds.get(&serial).copied()
    }

    /// Registers a cached indom and loads its saved name-to-id map.
    pub(crate) fn register(&mut self, serial: u32, kind: IndomKind) {
        if self.kinds.insert(serial, kind).is_some() {
            return;
        }
        match kind {
            IndomKind::Cached => {
                // SAFETY: plain call with an indom number; loads the saved cache file if any
                // (a missing file is not an error for us: it returns a negative code we ignore).
                unsafe {
                    sys::pmdaCacheOp(self.raw(serial), sys::PMDA_CACHE_LOAD);
                }
            }
            IndomKind::Fixed => {
                self.fixed.entry(serial).or_default();
                self.fixed_dirty = true;
            }
        }
    }

    /// pmdaCacheStore of `name` with `op` (add, hide, cull) in a cached indom: its result,
    /// or UnknownInstance when the indom is not a cached one or the name cannot be a C string.
    fn store(&mut self, serial: u32, name: &str, op: libc::c_int) -> Result<i32, PmdaError> {
        if self.kind(serial) != Some(IndomKind::Cached) {
            return Err(PmdaError::UnknownInstance);
        }
        let c = cname(name)?;
        // SAFETY: valid NUL-terminated name; libpcp_pmda copies it. No private data.
        Ok(unsafe { sys::pmdaCacheStore(self.raw(serial), op, c.as_ptr(), std::ptr::null_mut()) })
    }

    /// Has the next [`Self::save`] write the cache of `serial`.
    fn mark_dirty(&mut self, serial: u32) {
        if !self.dirty_caches.contains(&serial) {
            self.dirty_caches.push(serial);
        }
    }

    /// Adds (or re-activates) `name` in a cached indom and returns its instance id. The same
    /// name always gets the same id, also after a restart of the agent.
    pub fn add(&mut self, serial: u32, name: &str) -> Result<u32, PmdaError> {
        let inst = self.store(serial, name, sys::PMDA_CACHE_ADD)?;
        if inst < 0 {
            return Err(PmdaError::Generic);
        }
        self.mark_dirty(serial);
        Ok(inst as u32)
    }

    /// Marks `name` inactive: it is no longer listed or fetched, but keeps its id.
    pub fn hide(&mut self, serial: u32, name: &str) {
        let _ = self.store(serial, name, sys::PMDA_CACHE_HIDE);
    }

    /// Removes `name` from a cached indom for good (its id may be reused): for members that
    /// will not come back, such as exited processes, so the cache does not grow without end.
    pub fn cull(&mut self, serial: u32, name: &str) {
        if self.store(serial, name, sys::PMDA_CACHE_CULL).is_ok() {
            self.mark_dirty(serial);
        }
    }

    /// Marks every member of a cached indom inactive.
    pub fn hide_all(&mut self, serial: u32) {
        if self.kind(serial) == Some(IndomKind::Cached) {
            // SAFETY: plain call with an indom number.
            unsafe {
                sys::pmdaCacheOp(self.raw(serial), sys::PMDA_CACHE_INACTIVE);
            }
        }
    }

    /// The id `name` has in a cached indom, whether active or not.
    pub fn lookup(&self, serial: u32, name: &str) -> Option<u32> {
        if self.kind(serial) != Some(IndomKind::Cached) {
            return None;
        }
        let c = cname(name).ok()?;
        let mut inst: libc::c_int = -1;
        // SAFETY: valid name and out-pointer; private pointer not requested.
        let sts = unsafe {
            sys::pmdaCacheLookupName(
                self.raw(serial),
                c.as_ptr(),
                &mut inst,
                std::ptr::null_mut(),
            )
        };
        (sts >= 0 && inst >= 0).then_some(inst as u32)
    }

    /// The name of instance `inst` of a cached indom.
    pub fn name(&self, serial: u32, inst: u32) -> Option<String> {
        if self.kind(serial) != Some(IndomKind::Cached) {
            return None;
        }
        let mut name: *mut libc::c_char = std::ptr::null_mut();
        // SAFETY: out-pointer receives a pointer into the cache (not ours to free).
        let sts = unsafe {
            sys::pmdaCacheLookup(
                self.raw(serial),
                inst as libc::c_int,
                &mut name,
                std::ptr::null_mut(),
            )
        };
        if sts < 0 || name.is_null() {
            return None;
        }
        // SAFETY: libpcp_pmda returned a valid NUL-terminated string it owns.
        Some(
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Number of active members of a cached indom.
    pub fn active_count(&self, serial: u32) -> usize {
        if self.kind(serial) != Some(IndomKind::Cached) {
            return 0;
        }
        // SAFETY: plain call with an indom number.
        let n = unsafe { sys::pmdaCacheOp(self.raw(serial), sys::PMDA_CACHE_SIZE_ACTIVE) };
        n.max(0) as usize
    }

    /// Replaces the members of a fixed indom with `(id, name)` pairs.
    pub fn set_fixed(&mut self, serial: u32, members: &[(u32, String)]) {
        if self.kind(serial) != Some(IndomKind::Fixed) {
            return;
        }
        let set = self.fixed.entry(serial).or_default();
        let same = set.ids.len() == members.len()
            && set
                .ids
                .iter()
                .zip(&set.names)
                .zip(members)
                .all(|((i, n), (id, name))| {
                    i.i_inst as u32 == *id && n.as_bytes() == name.as_bytes()
                });
        if same {
            return;
        }
        set.names = members
            .iter()
            .map(|(_, n)| CString::new(n.replace('\0', " ")).unwrap_or_default())
            .collect();
        set.ids = members
            .iter()
            .zip(&set.names)
            .map(|((id, _), n)| sys::pmdaInstid {
                i_inst: *id as libc::c_int,
                i_name: n.as_ptr() as *mut libc::c_char,
            })
            .collect();
        self.fixed_dirty = true;
    }

    /// Instances outside a PMDA (`pmdabcc --probe`): pmdaCache works without pmcd. Cached
    /// indoms start empty and are never saved, so the agent's instance ids are neither read
    /// nor changed. Each domain number has caches of its own.
    pub fn standalone(domain: u32, indoms: &[(u32, IndomKind)]) -> Self {
        let mut i = Instances::new(domain);
        for &(serial, kind) in indoms {
            i.kinds.insert(serial, kind);
            if kind == IndomKind::Fixed {
                i.fixed.entry(serial).or_default();
            }
        }
        i
    }

    /// The active members of an indom as (id, name), for clients of [`Instances::standalone`].
    pub fn members(&self, serial: u32) -> Vec<(u32, String)> {
        match self.kind(serial) {
            Some(IndomKind::Fixed) => self.fixed.get(&serial).map_or_else(Vec::new, |f| {
                f.ids
                    .iter()
                    .zip(&f.names)
                    .map(|(i, n)| (i.i_inst as u32, n.to_string_lossy().into_owned()))
                    .collect()
            }),
            Some(IndomKind::Cached) => {
                let raw = self.raw(serial);
                let mut out = Vec::new();
                // SAFETY: plain calls with an indom number; the walk visits active entries.
                unsafe {
                    sys::pmdaCacheOp(raw, sys::PMDA_CACHE_WALK_REWIND);
                    loop {
                        let inst = sys::pmdaCacheOp(raw, sys::PMDA_CACHE_WALK_NEXT);
                        if inst < 0 {
                            break;
                        }
                        if let Some(n) = self.name(serial, inst as u32) {
                            out.push((inst as u32, n));
                        }
                    }
                }
                out.sort();
                out
            }
            None => Vec::new(),
        }
    }

    /// Writes changed cached indoms to disk, so ids survive a restart.
    pub(crate) fn save(&mut self) {
        for serial in std::mem::take(&mut self.dirty_caches) {
            // SAFETY: plain call with an indom number; writes only when the cache changed.
            unsafe {
                sys::pmdaCacheOp(self.raw(serial), sys::PMDA_CACHE_SAVE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // pmdaCache works without pmcd: what `pmdabcc --probe` relies on.
    #[test]
    fn standalone_instances_list_active_members_only() {
        let mut i = Instances::standalone(300, &[(1, IndomKind::Cached), (2, IndomKind::Fixed)]);
        let a = i.add(1, "a").unwrap();
        let b = i.add(1, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(i.add(1, "a").unwrap(), a, "the same name keeps its id");
        i.hide(1, "a");
        assert_eq!(i.members(1), vec![(b, "b".to_string())]);
        i.set_fixed(2, &[(0, "x".into()), (5, "y".into())]);
        assert_eq!(i.members(2), vec![(0, "x".into()), (5, "y".into())]);
        assert!(
            i.members(3).is_empty(),
            "an unregistered indom has no members"
        );
        // Another domain has caches of its own.
        let other = Instances::standalone(301, &[(1, IndomKind::Cached)]);
        assert!(other.members(1).is_empty());
    }
}
