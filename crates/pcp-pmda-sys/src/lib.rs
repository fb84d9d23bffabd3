//! Raw declarations for the parts of PCP's `libpcp_pmda` and `libpcp` this project uses.
//!
//! Hand-written from `<pcp/pmapi.h>` and `<pcp/pmda.h>` (PCP 6), so an ordinary build needs
//! neither bindgen nor libclang. Every struct here is checked against the installed headers
//! by the tests at the bottom (see `layout.c`). Only little-endian targets without
//! `HAVE_BITFIELDS_LTOR` are supported, which is every Linux target PCP builds for.
#![allow(non_camel_case_types, non_snake_case)]

use libc::{c_char, c_int, c_uint, c_void, time_t};

pub type pmID = c_uint;
pub type pmInDom = c_uint;

pub const PM_ID_NULL: pmID = 0xffff_ffff;
pub const PM_INDOM_NULL: pmInDom = 0xffff_ffff;
pub const PM_IN_NULL: c_uint = 0xffff_ffff;

pub const PM_TYPE_32: c_int = 0;
pub const PM_TYPE_U32: c_int = 1;
pub const PM_TYPE_64: c_int = 2;
pub const PM_TYPE_U64: c_int = 3;
pub const PM_TYPE_FLOAT: c_int = 4;
pub const PM_TYPE_DOUBLE: c_int = 5;
pub const PM_TYPE_STRING: c_int = 6;
/// A packed `pmEventArray` (event records with parameters).
pub const PM_TYPE_EVENT: c_int = 9;
/// An event record that is an observation (point in time), the usual kind.
pub const PM_EVENT_FLAG_POINT: c_int = 1;

pub const PM_SEM_COUNTER: c_int = 1;
pub const PM_SEM_INSTANT: c_int = 3;
pub const PM_SEM_DISCRETE: c_int = 4;

pub const PM_SPACE_BYTE: u8 = 0;
pub const PM_SPACE_KBYTE: u8 = 1;
pub const PM_TIME_NSEC: u8 = 0;
pub const PM_TIME_USEC: u8 = 1;
pub const PM_TIME_MSEC: u8 = 2;
pub const PM_TIME_SEC: u8 = 3;
pub const PM_COUNT_ONE: i8 = 0;

pub const PM_TEXT_ONELINE: c_int = 1;
pub const PM_TEXT_HELP: c_int = 2;
pub const PM_TEXT_PMID: c_int = 4;
pub const PM_TEXT_INDOM: c_int = 8;

pub const PM_LABEL_CONTEXT: c_int = 1 << 0;
pub const PM_LABEL_DOMAIN: c_int = 1 << 1;
pub const PM_LABEL_INDOM: c_int = 1 << 2;
pub const PM_LABEL_CLUSTER: c_int = 1 << 3;
pub const PM_LABEL_ITEM: c_int = 1 << 4;
pub const PM_LABEL_INSTANCES: c_int = 1 << 5;

const PM_ERR_BASE: c_int = 12345;
pub const PM_ERR_GENERIC: c_int = -PM_ERR_BASE;
pub const PM_ERR_TEXT: c_int = -PM_ERR_BASE - 4;
pub const PM_ERR_APPVERSION: c_int = -PM_ERR_BASE - 5;
pub const PM_ERR_VALUE: c_int = -PM_ERR_BASE - 6;
pub const PM_ERR_NAME: c_int = -PM_ERR_BASE - 12;
pub const PM_ERR_PMID: c_int = -PM_ERR_BASE - 13;
pub const PM_ERR_INDOM: c_int = -PM_ERR_BASE - 14;
pub const PM_ERR_INST: c_int = -PM_ERR_BASE - 15;
pub const PM_ERR_PERMISSION: c_int = -PM_ERR_BASE - 42;
pub const PM_ERR_TYPE: c_int = -PM_ERR_BASE - 52;
pub const PM_ERR_AGAIN: c_int = -PM_ERR_BASE - 44;
pub const PM_ERR_BADSTORE: c_int = -PM_ERR_BASE - 55;
pub const PM_ERR_PMDAREADY: c_int = -PM_ERR_BASE - 1048;
pub const PM_ERR_PMDANOTREADY: c_int = -PM_ERR_BASE - 1049;

pub const PMDA_INTERFACE_7: c_int = 7;
pub const PMAPI_VERSION_2: c_int = 2;
pub const PMDA_FLAG_AUTHORIZE: c_int = 1 << 2;
pub const PMDA_EXT_LABEL_CHANGE: c_int = 1 << 5;
pub const PMDA_EXT_NAMES_CHANGE: c_int = 1 << 6;

pub const PMDA_ATTR_USERNAME: c_int = 5;
pub const PMDA_ATTR_USERID: c_int = 11;
pub const PMDA_ATTR_GROUPID: c_int = 12;
pub const PMDA_ATTR_PROCESSID: c_int = 14;

pub const PMDA_FETCH_NOVALUES: c_int = 0;
pub const PMDA_FETCH_STATIC: c_int = 1;
pub const PMDA_FETCH_DYNAMIC: c_int = 2;

pub const PMDA_CACHE_LOAD: c_int = 1;
pub const PMDA_CACHE_ADD: c_int = 2;
pub const PMDA_CACHE_HIDE: c_int = 3;
pub const PMDA_CACHE_CULL: c_int = 4;
pub const PMDA_CACHE_SAVE: c_int = 6;
pub const PMDA_CACHE_ACTIVE: c_int = 8;
pub const PMDA_CACHE_INACTIVE: c_int = 9;
pub const PMDA_CACHE_SIZE_ACTIVE: c_int = 11;
pub const PMDA_CACHE_WALK_REWIND: c_int = 14;
pub const PMDA_CACHE_WALK_NEXT: c_int = 15;
pub const PMDA_CACHE_CHECK: c_int = 16;
pub const PMDA_CACHE_SYNC: c_int = 18;

/// `pmUnits`: six 4-bit fields and 8 bits of padding in one 32-bit word. With
/// `HAVE_BITFIELDS_LTOR` undefined the header declares `pad` first, so on a little-endian
/// target `pad` is bits 0..8 and `dimSpace` bits 28..32.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct pmUnits(pub u32);

impl pmUnits {
    pub const fn new(
        dim_space: i8,
        dim_time: i8,
        dim_count: i8,
        scale_space: u8,
        scale_time: u8,
        scale_count: i8,
    ) -> Self {
        const fn n(v: i32) -> u32 {
            (v as u32) & 0xf
        }
        pmUnits(
            n(scale_count as i32) << 8
                | n(scale_time as i32) << 12
                | n(scale_space as i32) << 16
                | n(dim_count as i32) << 20
                | n(dim_time as i32) << 24
                | n(dim_space as i32) << 28,
        )
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmDesc {
    pub pmid: pmID,
    pub type_: c_int,
    pub indom: pmInDom,
    pub sem: c_int,
    pub units: pmUnits,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmdaMetric {
    pub m_user: *mut c_void,
    pub m_desc: pmDesc,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmdaInstid {
    pub i_inst: c_int,
    pub i_name: *mut c_char,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pmdaIndom {
    pub it_indom: pmInDom,
    pub it_numinst: c_int,
    pub it_set: *mut pmdaInstid,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union pmAtomValue {
    pub l: i32,
    pub ul: u32,
    pub ll: i64,
    pub ull: u64,
    pub f: f32,
    pub d: f64,
    pub cp: *mut c_char,
    pub vbp: *mut c_void,
}

/// Opaque libpcp types that only travel through pointers here.
#[repr(C)]
pub struct pmResult {
    _p: [u8; 0],
}
#[repr(C)]
pub struct pmProfile {
    _p: [u8; 0],
}
#[repr(C)]
pub struct pmInResult {
    _p: [u8; 0],
}
#[repr(C)]
pub struct pmLabelSet {
    _p: [u8; 0],
}
#[repr(C)]
pub struct pmdaNameSpace {
    _p: [u8; 0],
}

pub type pmdaFetchCallBack =
    Option<unsafe extern "C" fn(*mut pmdaMetric, c_uint, *mut pmAtomValue) -> c_int>;
pub type pmdaEndContextCallBack = Option<unsafe extern "C" fn(c_int)>;
pub type pmdaLabelCallBack =
    Option<unsafe extern "C" fn(pmInDom, c_uint, *mut *mut pmLabelSet) -> c_int>;

#[repr(C)]
pub struct pmdaExt {
    pub e_flags: c_uint,
    pub e_ext: *mut c_void,
    pub e_sockname: *mut c_char,
    pub e_name: *const c_char,
    pub e_logfile: *const c_char,
    pub e_helptext: *const c_char,
    pub e_status: c_int,
    pub e_infd: c_int,
    pub e_outfd: c_int,
    pub e_port: c_int,
    pub e_singular: c_int,
    pub e_ordinal: c_int,
    pub e_direct: c_int,
    pub e_domain: c_int,
    pub e_nmetrics: c_int,
    pub e_nindoms: c_int,
    pub e_help: c_int,
    pub e_prof: *mut pmProfile,
    pub e_io: c_int,
    pub e_indoms: *mut pmdaIndom,
    pub e_idp: *mut pmdaIndom,
    pub e_metrics: *mut pmdaMetric,
    pub e_resultCallBack: Option<unsafe extern "C" fn(*mut pmResult)>,
    pub e_fetchCallBack: pmdaFetchCallBack,
    pub e_checkCallBack: Option<unsafe extern "C" fn() -> c_int>,
    pub e_doneCallBack: Option<unsafe extern "C" fn()>,
    pub e_context: c_int,
    pub e_endCallBack: pmdaEndContextCallBack,
    pub e_labelCallBack: pmdaLabelCallBack,
}

/// The `version.seven` member of `pmdaInterface`'s union; it is the largest member, so a
/// struct holding it has the union's size and layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct pmdaInterfaceSeven {
    pub ext: *mut pmdaExt,
    pub profile: Option<unsafe extern "C" fn(*mut pmProfile, *mut pmdaExt) -> c_int>,
    pub fetch:
        Option<unsafe extern "C" fn(c_int, *mut pmID, *mut *mut pmResult, *mut pmdaExt) -> c_int>,
    pub desc: Option<unsafe extern "C" fn(pmID, *mut pmDesc, *mut pmdaExt) -> c_int>,
    pub instance: Option<
        unsafe extern "C" fn(
            pmInDom,
            c_int,
            *mut c_char,
            *mut *mut pmInResult,
            *mut pmdaExt,
        ) -> c_int,
    >,
    pub text: Option<unsafe extern "C" fn(c_int, c_int, *mut *mut c_char, *mut pmdaExt) -> c_int>,
    pub store: Option<unsafe extern "C" fn(*mut pmResult, *mut pmdaExt) -> c_int>,
    pub pmid: Option<unsafe extern "C" fn(*const c_char, *mut pmID, *mut pmdaExt) -> c_int>,
    pub name: Option<unsafe extern "C" fn(pmID, *mut *mut *mut c_char, *mut pmdaExt) -> c_int>,
    pub children: Option<
        unsafe extern "C" fn(
            *const c_char,
            c_int,
            *mut *mut *mut c_char,
            *mut *mut c_int,
            *mut pmdaExt,
        ) -> c_int,
    >,
    pub attribute:
        Option<unsafe extern "C" fn(c_int, c_int, *const c_char, c_int, *mut pmdaExt) -> c_int>,
    pub label:
        Option<unsafe extern "C" fn(c_int, c_int, *mut *mut pmLabelSet, *mut pmdaExt) -> c_int>,
}

#[repr(C)]
pub struct pmdaInterface {
    pub domain: c_int,
    /// Bitfields `pmda_interface:8`, `pmapi_version:8`, `flags:16`, low bits first.
    pub comm: c_uint,
    pub status: c_int,
    pub version: pmdaInterfaceSeven,
}

/// A value of a pmResult's value set, as far as a store callback reads it.
#[repr(C)]
pub struct pmValue {
    pub inst: c_int,
    pub value: pmValueUnion,
}
#[repr(C)]
#[derive(Clone, Copy)]
pub union pmValueUnion {
    pub pval: *mut pmValueBlock,
    pub lval: c_int,
}
#[repr(C)]
pub struct pmValueBlock {
    /// `vtype:8` and `vlen:24` bitfields.
    pub vtype_vlen: c_uint,
    pub vbuf: [c_char; 1],
}
#[repr(C)]
pub struct pmValueSet {
    pub pmid: pmID,
    pub numval: c_int,
    pub valfmt: c_int,
    pub vlist: [pmValue; 1],
}
/// The head of `pmResult` (timestamp as `struct timeval`, then the value sets).
#[repr(C)]
pub struct pmResultHead {
    pub timestamp: libc::timeval,
    pub numpmid: c_int,
    pub vset: [*mut pmValueSet; 1],
}

extern "C" {
    // libpcp
    pub fn pmSetProgname(name: *const c_char);
    pub fn pmGetConfig(name: *const c_char) -> *mut c_char;
    pub fn pmErrStr(code: c_int) -> *mut c_char;
    pub fn pmNotifyErr(priority: c_int, fmt: *const c_char, ...);
    pub fn pmExtractValue(
        valfmt: c_int,
        ival: *const pmValue,
        itype: c_int,
        oval: *mut pmAtomValue,
        otype: c_int,
    ) -> c_int;

    // libpcp_pmda: set-up and the main loop pieces
    pub fn pmdaDaemon(
        dispatch: *mut pmdaInterface,
        interface: c_int,
        name: *const c_char,
        domain: c_int,
        logfile: *const c_char,
        helptext: *const c_char,
    );
    pub fn pmdaOpenLog(dispatch: *mut pmdaInterface);
    pub fn pmdaSetCommFlags(dispatch: *mut pmdaInterface, flags: c_int);
    pub fn pmdaInit(
        dispatch: *mut pmdaInterface,
        indoms: *mut pmdaIndom,
        nindoms: c_int,
        metrics: *mut pmdaMetric,
        nmetrics: c_int,
    );
    pub fn pmdaConnect(dispatch: *mut pmdaInterface);
    pub fn pmdaSendError(dispatch: *mut pmdaInterface, err: c_int);
    pub fn pmdaSetFetchCallBack(dispatch: *mut pmdaInterface, cb: pmdaFetchCallBack);
    pub fn pmdaSetEndContextCallBack(dispatch: *mut pmdaInterface, cb: pmdaEndContextCallBack);
    pub fn pmdaSetLabelCallBack(dispatch: *mut pmdaInterface, cb: pmdaLabelCallBack);
    pub fn pmdaExtSetFlags(ext: *mut pmdaExt, flags: c_int);
    pub fn pmdaRehash(ext: *mut pmdaExt, metrics: *mut pmdaMetric, nmetrics: c_int);
    /// The context of the last `pmdaFetch`, not of the PDU being answered: judge a request
    /// by `pmdaExt.e_context` instead.
    pub fn pmdaGetContext() -> c_int;
    pub fn __pmdaInFd(dispatch: *mut pmdaInterface) -> c_int;
    pub fn __pmdaMainPDU(dispatch: *mut pmdaInterface) -> c_int;

    // libpcp_pmda: the default callbacks we wrap
    pub fn pmdaInstance(
        indom: pmInDom,
        inst: c_int,
        name: *mut c_char,
        result: *mut *mut pmInResult,
        ext: *mut pmdaExt,
    ) -> c_int;
    pub fn pmdaFetch(
        n: c_int,
        pmids: *mut pmID,
        resp: *mut *mut pmResult,
        ext: *mut pmdaExt,
    ) -> c_int;
    pub fn pmdaLabel(
        ident: c_int,
        type_: c_int,
        lp: *mut *mut pmLabelSet,
        ext: *mut pmdaExt,
    ) -> c_int;
    pub fn pmdaAttribute(
        ctx: c_int,
        attr: c_int,
        value: *const c_char,
        len: c_int,
        ext: *mut pmdaExt,
    ) -> c_int;
    pub fn pmdaAddLabels(lp: *mut *mut pmLabelSet, fmt: *const c_char, ...) -> c_int;

    // dynamic namespace
    pub fn pmdaTreeCreate(tree: *mut *mut pmdaNameSpace) -> c_int;
    pub fn pmdaTreeInsert(tree: *mut pmdaNameSpace, pmid: pmID, name: *const c_char) -> c_int;
    pub fn pmdaTreeRebuildHash(tree: *mut pmdaNameSpace, numpmid: c_int);
    pub fn pmdaTreeRelease(tree: *mut pmdaNameSpace);
    pub fn pmdaTreePMID(tree: *mut pmdaNameSpace, name: *const c_char, pmid: *mut pmID) -> c_int;
    pub fn pmdaTreeName(
        tree: *mut pmdaNameSpace,
        pmid: pmID,
        names: *mut *mut *mut c_char,
    ) -> c_int;
    pub fn pmdaTreeChildren(
        tree: *mut pmdaNameSpace,
        name: *const c_char,
        traverse: c_int,
        offspring: *mut *mut *mut c_char,
        status: *mut *mut c_int,
    ) -> c_int;

    // instance cache
    pub fn pmdaCacheStore(
        indom: pmInDom,
        flags: c_int,
        name: *const c_char,
        private: *mut c_void,
    ) -> c_int;
    pub fn pmdaCacheLookupName(
        indom: pmInDom,
        name: *const c_char,
        inst: *mut c_int,
        private: *mut *mut c_void,
    ) -> c_int;
    pub fn pmdaCacheLookup(
        indom: pmInDom,
        inst: c_int,
        name: *mut *mut c_char,
        private: *mut *mut c_void,
    ) -> c_int;
    pub fn pmdaCacheOp(indom: pmInDom, op: c_int) -> c_int;
    pub fn pmdaCachePurge(indom: pmInDom, recent: time_t) -> c_int;
    // libpcp_pmda: event records (PM_TYPE_EVENT values), pmdaEventNewArray(3)
    pub fn pmdaEventNewArray() -> c_int;
    pub fn pmdaEventResetArray(idx: c_int) -> c_int;
    pub fn pmdaEventReleaseArray(idx: c_int) -> c_int;
    pub fn pmdaEventAddRecord(idx: c_int, tv: *mut libc::timeval, flags: c_int) -> c_int;
    pub fn pmdaEventAddMissedRecord(idx: c_int, tv: *mut libc::timeval, nmissed: c_int) -> c_int;
    pub fn pmdaEventAddParam(idx: c_int, pmid: pmID, ty: c_int, avp: *mut pmAtomValue) -> c_int;
    /// The packed `pmEventArray` (a `pmValueBlock`), valid until the next change to the array.
    pub fn pmdaEventGetAddr(idx: c_int) -> *mut c_void;

    pub fn pmdaCacheResize(indom: pmInDom, maximum: c_int) -> c_int;
}

#[doc(hidden)]
pub mod layout {
    use libc::{c_int, c_uint, size_t};
    extern "C" {
        pub fn pcp_layout_size(which: c_int) -> size_t;
        pub fn pcp_layout_offset(which: c_int) -> size_t;
        pub fn pcp_layout_units(
            ds: c_int,
            dt: c_int,
            dc: c_int,
            ss: c_int,
            st: c_int,
            sc: c_int,
        ) -> c_uint;
        pub fn pcp_layout_comm(iface: c_int, api: c_int, flags: c_int) -> c_uint;
        pub fn pcp_layout_const(which: c_int) -> c_int;
    }
}

/// Packs `pmdaInterface.comm` as the C compiler does.
pub const fn comm_word(interface: c_int, pmapi: c_int, flags: c_int) -> c_uint {
    (interface as c_uint & 0xff) | (pmapi as c_uint & 0xff) << 8 | (flags as c_uint & 0xffff) << 16
}

#[cfg(test)]
mod tests {
    use super::layout::*;
    use super::*;
    use std::mem::{offset_of, size_of};

    fn size(which: c_int) -> usize {
        // SAFETY: a pure function of its argument, compiled from layout.c.
        unsafe { pcp_layout_size(which) }
    }
    fn off(which: c_int) -> usize {
        // SAFETY: as above.
        unsafe { pcp_layout_offset(which) }
    }

    #[test]
    fn struct_sizes_match_the_headers() {
        assert_eq!(size_of::<pmUnits>(), size(0), "pmUnits");
        assert_eq!(size_of::<pmDesc>(), size(1), "pmDesc");
        assert_eq!(size_of::<pmdaMetric>(), size(2), "pmdaMetric");
        assert_eq!(size_of::<pmdaInstid>(), size(3), "pmdaInstid");
        assert_eq!(size_of::<pmdaIndom>(), size(4), "pmdaIndom");
        assert_eq!(size_of::<pmdaExt>(), size(5), "pmdaExt");
        assert_eq!(size_of::<pmdaInterface>(), size(6), "pmdaInterface");
        assert_eq!(size_of::<pmAtomValue>(), size(7), "pmAtomValue");
    }

    #[test]
    fn field_offsets_match_the_headers() {
        assert_eq!(offset_of!(pmdaExt, e_infd), off(0));
        assert_eq!(offset_of!(pmdaExt, e_indoms), off(1));
        assert_eq!(offset_of!(pmdaExt, e_metrics), off(2));
        assert_eq!(offset_of!(pmdaExt, e_context), off(3));
        assert_eq!(offset_of!(pmdaExt, e_labelCallBack), off(4));
        assert_eq!(
            offset_of!(pmdaInterface, version) + offset_of!(pmdaInterfaceSeven, ext),
            off(5)
        );
        assert_eq!(
            offset_of!(pmdaInterface, version) + offset_of!(pmdaInterfaceSeven, label),
            off(6)
        );
        assert_eq!(
            offset_of!(pmdaInterface, version) + offset_of!(pmdaInterfaceSeven, attribute),
            off(7)
        );
        assert_eq!(offset_of!(pmdaMetric, m_desc), off(8));
        assert_eq!(offset_of!(pmDesc, units), off(9));
        assert_eq!(offset_of!(pmdaIndom, it_set), off(10));
        assert_eq!(offset_of!(pmdaExt, e_nmetrics), off(11));
        assert_eq!(offset_of!(pmdaExt, e_nindoms), off(12));
    }

    #[test]
    fn constants_match_the_headers() {
        // SAFETY: pure function.
        let c = |which| unsafe { pcp_layout_const(which) };
        let ours = [
            PM_ERR_GENERIC,
            PM_ERR_TEXT,
            PM_ERR_APPVERSION,
            PM_ERR_VALUE,
            PM_ERR_NAME,
            PM_ERR_PMID,
            PM_ERR_INDOM,
            PM_ERR_INST,
            PM_ERR_PERMISSION,
            PM_ERR_TYPE,
            PM_ERR_AGAIN,
            PM_ERR_BADSTORE,
            PM_ERR_PMDAREADY,
            PM_ERR_PMDANOTREADY,
            PMDA_ATTR_USERNAME,
            PMDA_ATTR_USERID,
            PMDA_ATTR_GROUPID,
            PMDA_ATTR_PROCESSID,
        ];
        for (i, v) in ours.iter().enumerate() {
            assert_eq!(*v, c(i as c_int), "constant {i}");
        }
    }

    #[test]
    fn bitfields_pack_like_the_c_compiler() {
        for (ds, dt, dc, ss, st, sc) in [
            (1, 0, 0, 0, 0, 0),
            (0, 1, 0, 0, 1, 0),
            (0, 0, 1, 0, 0, 0),
            (1, -1, 0, 1, 3, 0),
            (0, 0, 1, 0, 0, -3),
            (-1, 1, -1, 8, 5, 7),
        ] {
            // SAFETY: pure function.
            let c = unsafe { pcp_layout_units(ds, dt, dc, ss, st, sc) };
            let r = pmUnits::new(ds as i8, dt as i8, dc as i8, ss as u8, st as u8, sc as i8).0;
            assert_eq!(r, c, "pmUnits({ds},{dt},{dc},{ss},{st},{sc})");
        }
        for (i, a, f) in [(7, 2, 0), (7, 2, PMDA_FLAG_AUTHORIZE), (5, 1, 0xffff)] {
            // SAFETY: pure function.
            let c = unsafe { pcp_layout_comm(i, a, f) };
            assert_eq!(comm_word(i, a, f), c);
        }
    }
}
