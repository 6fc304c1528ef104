//! The dataplane's packets off the fast path by reason, for snapshots (listings, `xvsadm top`,
//! the status page) and the metrics, which all read them from the snapshot.

use std::collections::BTreeMap;

use super::*;

impl Control {
    /// Every reason's count since the dataplane was loaded; empty without a dataplane.
    pub(super) fn drops(&self) -> BTreeMap<String, u64> {
        let Some(dp) = self.dp.as_ref() else { return BTreeMap::new() };
        let mut r: BTreeMap<String, u64> =
            dp.director.reasons().unwrap_or_default().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        // Kept as a counter (the reasons' map has no room left in its layout).
        r.insert("sip_no_call_id".into(), dp.director.counter(xvs_abi::counter::SIP_NO_CALLID).unwrap_or(0));
        r
    }
}
