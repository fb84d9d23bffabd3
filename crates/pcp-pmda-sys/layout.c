/*
 * Layout probes: what the installed PCP headers say, for the Rust layout tests.
 * Nothing here is used at run time.
 */
#include <stddef.h>
#include <string.h>
#include <pcp/pmapi.h>
#include <pcp/pmda.h>

size_t pcp_layout_size(int which)
{
    switch (which) {
    case 0: return sizeof(pmUnits);
    case 1: return sizeof(pmDesc);
    case 2: return sizeof(pmdaMetric);
    case 3: return sizeof(pmdaInstid);
    case 4: return sizeof(pmdaIndom);
    case 5: return sizeof(pmdaExt);
    case 6: return sizeof(pmdaInterface);
    case 7: return sizeof(pmAtomValue);
    }
    return 0;
}

size_t pcp_layout_offset(int which)
{
    switch (which) {
    case 0: return offsetof(pmdaExt, e_infd);
    case 1: return offsetof(pmdaExt, e_indoms);
    case 2: return offsetof(pmdaExt, e_metrics);
    case 3: return offsetof(pmdaExt, e_context);
    case 4: return offsetof(pmdaExt, e_labelCallBack);
    case 5: return offsetof(pmdaInterface, version.seven.ext);
    case 6: return offsetof(pmdaInterface, version.seven.label);
    case 7: return offsetof(pmdaInterface, version.seven.attribute);
    case 8: return offsetof(pmdaMetric, m_desc);
    case 9: return offsetof(pmDesc, units);
    case 10: return offsetof(pmdaIndom, it_set);
    case 11: return offsetof(pmdaExt, e_nmetrics);
    case 12: return offsetof(pmdaExt, e_nindoms);
    }
    return (size_t)-1;
}

/* pmUnits as the compiler packs the bitfields, returned as its 32-bit image */
unsigned int pcp_layout_units(int ds, int dt, int dc, int ss, int st, int sc)
{
    pmUnits u;
    unsigned int img;
    memset(&u, 0, sizeof(u));
    u.dimSpace = ds; u.dimTime = dt; u.dimCount = dc;
    u.scaleSpace = ss; u.scaleTime = st; u.scaleCount = sc;
    memcpy(&img, &u, sizeof(img));
    return img;
}

/* pmdaInterface.comm as the compiler packs it */
unsigned int pcp_layout_comm(int iface, int api, int flags)
{
    pmdaInterface d;
    unsigned int img;
    memset(&d, 0, sizeof(d));
    d.comm.pmda_interface = iface; d.comm.pmapi_version = api; d.comm.flags = flags;
    memcpy(&img, &d.comm, sizeof(img));
    return img;
}

/* Error codes and attribute numbers, in the order of the Rust test's list */
int pcp_layout_const(int which)
{
    static const int v[] = {
        PM_ERR_GENERIC, PM_ERR_TEXT, PM_ERR_APPVERSION, PM_ERR_VALUE, PM_ERR_NAME,
        PM_ERR_PMID, PM_ERR_INDOM, PM_ERR_INST, PM_ERR_PERMISSION, PM_ERR_TYPE,
        PM_ERR_AGAIN, PM_ERR_BADSTORE, PM_ERR_PMDAREADY, PM_ERR_PMDANOTREADY,
        PMDA_ATTR_USERNAME, PMDA_ATTR_USERID, PMDA_ATTR_GROUPID, PMDA_ATTR_PROCESSID,
    };
    return which >= 0 && which < (int)(sizeof(v) / sizeof(v[0])) ? v[which] : 0;
}
