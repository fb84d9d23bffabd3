//! Forcing one hook on [`super::first_working`], for `pmdabcc --probe --all-hooks`, which
//! checks every alternative a module has on this kernel, not only the one it would choose.

use super::Hook;
use crate::module::ModuleError;

/// What `pmdabcc --probe --all-hooks` forces on [`super::first_working`], and what came of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forcing {
    /// The one hook to try; `None`: the module's own list (the normal case).
    pub hook: Option<Hook>,
    /// Set by `first_working`: it was called (the module has hook alternatives).
    pub consulted: bool,
    /// Set by `first_working`: the module does not offer the forced hook.
    pub not_offered: bool,
    /// The hook `first_working` last succeeded with.
    pub chosen: Option<Hook>,
}

// Process-wide: the probe starts one module at a time on one thread; the agent never sets it.
static FORCING: std::sync::Mutex<Forcing> = std::sync::Mutex::new(Forcing {
    hook: None,
    consulted: false,
    not_offered: false,
    chosen: None,
});

fn forcing() -> std::sync::MutexGuard<'static, Forcing> {
    FORCING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restricts [`super::first_working`] to `hook` (None: no restriction) and clears the record of
/// the previous start. Returns the record of the previous start.
pub fn force_hook(hook: Option<Hook>) -> Forcing {
    std::mem::replace(
        &mut *forcing(),
        Forcing {
            hook,
            ..Default::default()
        },
    )
}

pub(super) fn forced_among(hooks: &[Hook]) -> Result<Vec<Hook>, ModuleError> {
    let mut f = forcing();
    f.consulted = true;
    match f.hook {
        None => Ok(hooks.to_vec()),
        Some(h) if hooks.contains(&h) => Ok(vec![h]),
        Some(h) => {
            f.not_offered = true;
            Err(ModuleError::NoHook(format!(
                "{} forced, but this module offers only {}",
                h.as_str(),
                hooks
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

pub(super) fn note_choice(h: Hook) {
    forcing().chosen = Some(h);
}

/// For the framework's twin programs (`<base>_btf/_raw/_tp`): the one hook kind to keep
/// ("tp_btf", "raw_tp", "tracepoint") when a hook is forced, given the kinds the object has
/// twins of; `None`: keep them all.
pub fn forced_twin(offered: &[&str]) -> Option<&'static str> {
    let mut f = forcing();
    if offered.is_empty() {
        return None;
    }
    f.consulted = true;
    let h = f.hook?;
    if !offered.contains(&h.as_str()) {
        f.not_offered = true;
    }
    Some(h.as_str())
}

/// The framework chose `kind` for every twin group.
pub fn note_twin_choice(kind: &str) {
    let h = [Hook::TpBtf, Hook::RawTp, Hook::Tracepoint]
        .into_iter()
        .find(|h| h.as_str() == kind);
    if let Some(h) = h {
        note_choice(h);
    }
}
