//! The bcc PMDA: eBPF (CO-RE) programs served as Performance Co-Pilot metrics.
//!
//! - [`config`][config]: bcc.conf; [`compat`]: the keys and modules of PCP's Python pmdabcc
//! - [`module`]: the module interface; [`modules`]: one folder per module
//! - [`agent`]: runs the modules behind the PMDA layer (the `pcp-pmda` crate)
//! - [`bpf`]: BPF plumbing shared by the modules
//! - [`framework`]: modules as a BPF object plus a spec (built-in and user modules)
//! - [`probe`]: `pmdabcc --probe`, the modules' start on this kernel without pmcd

pub mod agent;
pub mod bpf;
pub mod compat;
pub mod config;
pub mod docs;
pub mod framework;
pub mod module;
pub mod modules;
pub mod probe;
pub mod process;
