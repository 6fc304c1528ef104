//! Tracking: what scripts and interfaces do to an instance's priority (keepalived's
//! `track_script`, `track_interface` and `vrrp_script`).
//!
//! A tracked object with weight 0 puts the instance in FAULT while it fails. Otherwise its
//! weight is added to the priority: a positive weight while it succeeds, a negative one while
//! it fails. `reverse` flips the direction (a positive weight then lowers the priority while
//! up, a negative one raises it while down) and makes weight 0 mean FAULT while up, as
//! keepalived.conf(5) describes. The sum is clamped to 1–254 by the instance.

/// One tracked object of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// A `vrrp_script` (by name) or an interface.
    pub what: Target,
    /// The weight (−253..=253); 0 means FAULT on failure.
    pub weight: i32,
    /// Swaps success and failure for the weight (keepalived's `reverse`).
    pub reverse: bool,
}

/// What is tracked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A `vrrp_script`, by name.
    Script(String),
    /// A network interface, by name: up with carrier is success.
    Interface(String),
}

/// The priority and fault an instance gets from its tracked objects, `ok(target)` telling
/// whether each succeeds now.
pub fn effective(base: u8, tracked: &[Tracked], ok: impl Fn(&Target) -> bool) -> (u8, bool) {
    let mut p = i32::from(base);
    let mut fault = false;
    for t in tracked {
        let good = ok(&t.what);
        if t.weight == 0 {
            // `weight 0 reverse`: down while the object is up.
            fault |= good == t.reverse;
        } else if (t.weight > 0) == good {
            // A positive weight counts while up, a negative one while down; `reverse` flips
            // the direction of the change, not when it applies.
            p += if t.reverse { -t.weight } else { t.weight };
        }
    }
    (p.clamp(0, 255) as u8, fault)
}

/// A `vrrp_script`'s verdict from its run results: `rise` successes in a row make it good,
/// `fall` failures in a row make it bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptState {
    rise: u32,
    fall: u32,
    good: bool,
    run: u32,
}

impl ScriptState {
    /// A script that starts failed (`init_fail`) or good (keepalived's default: good until
    /// proven otherwise).
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> ScriptState {
        ScriptState { rise: rise.max(1), fall: fall.max(1), good: !init_fail, run: 0 }
    }

    /// Whether it counts as succeeding.
    pub fn good(&self) -> bool {
        self.good
    }

    /// One run's result; true when the verdict changed.
    pub fn handle_result(&mut self, ok: bool) -> bool {
        if ok == self.good {
            self.run = 0;
            return false;
        }
        self.run += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.run >= needed {
            self.good = ok;
            self.run = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, weight: i32, reverse: bool) -> Tracked {
        Tracked { what: Target::Script(name.into()), weight, reverse }
    }

    #[test]
    fn weights_as_keepalived_applies_them() {
        let t = [script("up", 20, false), script("down", -30, false), script("zero", 0, false)];
        // All good: +20.
        assert_eq!(effective(100, &t, |_| true), (120, false));
        // All failing: −30 and FAULT for the weight-0 one.
        assert_eq!(effective(100, &t, |_| false), (70, true));
        // reverse: a positive weight lowers the priority while up, a negative one raises it
        // while down; weight 0 is FAULT while up.
        let r = [script("r", 10, true)];
        assert_eq!(effective(100, &r, |_| true), (90, false));
        assert_eq!(effective(100, &r, |_| false), (100, false));
        let r = [script("r", -10, true)];
        assert_eq!(effective(100, &r, |_| false), (110, false));
        assert_eq!(effective(100, &r, |_| true), (100, false));
        let r = [script("r", 0, true)];
        assert_eq!(effective(100, &r, |_| true), (100, true));
        assert_eq!(effective(100, &r, |_| false), (100, false));
    }

    #[test]
    fn rise_and_fall_count_runs_in_a_row() {
        let mut s = ScriptState::new(2, 3, false);
        assert!(s.good());
        assert!(!s.handle_result(false));
        assert!(!s.handle_result(false));
        assert!(!s.handle_result(true), "a success resets the count");
        assert!(!s.handle_result(false) && !s.handle_result(false));
        assert!(s.handle_result(false));
        assert!(!s.good());
        assert!(!s.handle_result(true));
        assert!(s.handle_result(true));
        assert!(s.good());
        assert!(!ScriptState::new(1, 1, true).good());
    }
}
