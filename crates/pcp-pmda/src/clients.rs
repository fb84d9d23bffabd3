//! Client credentials per pmcd context.
//!
//! What pmcd sends, and when (PCP 6, src/pmcd/src):
//! - A context number is pmcd's index of the client (`client[]` in client.c); `NewClient`
//!   reuses the lowest free index, so numbers come back as soon as clients go.
//! - Credentials arrive as one PDU_ATTR per attribute (PMDA_ATTR_USERID, _GROUPID,
//!   _USERNAME, _PROCESSID, ...), all of one client back to back: `DoAttributes`
//!   (config.c) walks the client's attribute table in one loop. pmcd sends them when a client
//!   authenticated (a Unix-socket client always has its peer uid/gid/pid) or named a
//!   container (`DoCreds`, dopdus.c), again when they change, and to a newly connected agent
//!   for every connected client (`ClientsAttributes`). A client that did not authenticate
//!   (TCP without SASL) gets no PDU at all: nothing announces its context.
//! - The end of a context is a PDU_ERROR PM_ERR_NOTCONN (`NotifyEndContext`, client.c), which
//!   pmcd skips while the agent is busy or not ready.
//!
//! So: a context is unauthenticated unless a record holds credentials for it; an attribute
//! that does not directly follow another attribute of the same context starts a new record
//! (the previous one's owner may have gone without an end notice, and a full sequence
//! always follows); the end notice drops the record. An unauthenticated client that takes
//! over the number of a context whose end notice was skipped cannot be told apart, so the
//! runtime keeps pmcd from skipping notices: it reports ready as soon as it is connected
//! (see `Pmda::run`).

use crate::pmda::Client;
use std::collections::HashMap;

use pcp_pmda_sys::{
    PMDA_ATTR_GROUPID as ATTR_GROUPID, PMDA_ATTR_PROCESSID as ATTR_PROCESSID,
    PMDA_ATTR_USERID as ATTR_USERID, PMDA_ATTR_USERNAME as ATTR_USERNAME,
};

struct Record {
    client: Client,
    /// Number of the PDU that brought the last attribute.
    last_pdu: u64,
}

#[derive(Default)]
pub(crate) struct Clients {
    records: HashMap<i32, Record>,
}

impl Clients {
    /// An attribute of `ctx`, carried by PDU number `pdu` (the runtime numbers every PDU it
    /// reads, whatever its type).
    pub fn attribute(&mut self, ctx: i32, pdu: u64, attr: i32, value: &str) {
        let continues = self
            .records
            .get(&ctx)
            .is_some_and(|r| r.last_pdu + 1 == pdu);
        if !continues {
            self.records.insert(
                ctx,
                Record {
                    client: Client {
                        context: ctx,
                        ..Default::default()
                    },
                    last_pdu: pdu,
                },
            );
        }
        let r = self.records.get_mut(&ctx).expect("inserted above");
        r.last_pdu = pdu;
        let c = &mut r.client;
        match attr {
            ATTR_USERID => c.uid = value.parse().ok(),
            ATTR_GROUPID => c.gid = value.parse().ok(),
            ATTR_USERNAME => c.user = Some(value.to_string()),
            ATTR_PROCESSID => c.pid = value.parse().ok(),
            _ => {}
        }
    }

    /// pmcd's end-of-context notice.
    pub fn end(&mut self, ctx: i32) {
        self.records.remove(&ctx);
    }

    /// The client behind `ctx`: without a record, an unauthenticated one.
    pub fn get(&self, ctx: i32) -> Client {
        self.records
            .get(&ctx)
            .map(|r| r.client.clone())
            .unwrap_or(Client {
                context: ctx,
                ..Default::default()
            })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes pmcd sends for a Unix-socket client of uid/gid, from PDU `pdu` on.
    fn local(c: &mut Clients, ctx: i32, pdu: u64, uid: u32, gid: u32, pid: u32) -> u64 {
        c.attribute(ctx, pdu, ATTR_USERID, &uid.to_string());
        c.attribute(ctx, pdu + 1, ATTR_GROUPID, &gid.to_string());
        c.attribute(ctx, pdu + 2, ATTR_PROCESSID, &pid.to_string());
        pdu + 3
    }

    #[test]
    fn a_context_without_a_record_is_unauthenticated() {
        let c = Clients::default();
        let x = c.get(7);
        assert_eq!((x.context, x.uid, x.gid, x.user), (7, None, None, None));
    }

    #[test]
    fn consecutive_attributes_make_one_client() {
        let mut c = Clients::default();
        local(&mut c, 3, 10, 0, 0, 42);
        let x = c.get(3);
        assert_eq!((x.uid, x.gid, x.pid), (Some(0), Some(0), Some(42)));
        // Another context's credentials do not touch this one.
        local(&mut c, 4, 13, 65534, 65534, 43);
        assert_eq!(c.get(3).uid, Some(0));
        assert_eq!(c.get(4).uid, Some(65534));
    }

    #[test]
    fn a_new_sequence_replaces_the_old_record() {
        let mut c = Clients::default();
        local(&mut c, 3, 10, 0, 0, 42);
        // Root's client left while pmcd skipped the end notice; a client that sends only a
        // process id (no uid) takes number 3 over, some PDUs later.
        c.attribute(3, 20, ATTR_PROCESSID, "99");
        let x = c.get(3);
        assert_eq!((x.uid, x.gid, x.pid), (None, None, Some(99)));
        // And an ordinary unprivileged user after it.
        local(&mut c, 3, 30, 1000, 1000, 100);
        assert_eq!((c.get(3).uid, c.get(3).user.clone()), (Some(1000), None));
    }

    #[test]
    fn the_end_notice_drops_the_record() {
        let mut c = Clients::default();
        local(&mut c, 3, 10, 0, 0, 42);
        c.end(3);
        assert_eq!(c.get(3).uid, None);
        assert_eq!(c.len(), 0);
        c.end(3); // a second notice is harmless
    }

    #[test]
    fn bad_numbers_are_no_credentials() {
        let mut c = Clients::default();
        c.attribute(5, 1, ATTR_USERID, "root");
        c.attribute(5, 2, ATTR_GROUPID, "");
        assert_eq!((c.get(5).uid, c.get(5).gid), (None, None));
    }
}
