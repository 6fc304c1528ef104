//! A small generational arena: stable ids for objects that other objects point at (real servers
//! referenced by connections and scheduler tables, connections referenced by templates). A stale
//! id (its object was freed and the slot reused) finds nothing rather than the wrong object,
//! which is what the kernel gets from reference counting.

/// An index into an [`Arena`], with the generation of the slot when it was handed out.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RawId {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

#[derive(Clone, Debug)]
enum Slot<T> {
    Used { gen: u32, value: T },
    Free { gen: u32, next: Option<u32> },
}

#[derive(Clone, Debug)]
pub(crate) struct Arena<T> {
    slots: Vec<Slot<T>>,
    free: Option<u32>,
    /// `free` does not list the slots [`Arena::insert_at`] left free: relinked before the list
    /// is next used (once, not per placed object: a restart places 100,000s of them).
    free_stale: bool,
    len: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena { slots: Vec::new(), free: None, free_stale: false, len: 0 }
    }
}

impl<T> Arena<T> {
    pub(crate) fn insert(&mut self, value: T) -> RawId {
        self.relink_free();
        self.len += 1;
        match self.free {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                let (gen, next) = match slot {
                    Slot::Free { gen, next } => (gen.wrapping_add(1), *next),
                    Slot::Used { .. } => unreachable!("free list points at a used slot"),
                };
                *slot = Slot::Used { gen, value };
                self.free = next;
                RawId { index, gen }
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("arena holds at most u32::MAX objects");
                self.slots.push(Slot::Used { gen: 0, value });
                RawId { index, gen: 0 }
            }
        }
    }

    /// Places `value` in slot `index` (which must be free), as it was in an earlier run: the
    /// dataplane refers to objects by slot, so a restarted daemon must put them back there.
    pub(crate) fn insert_at(&mut self, index: u32, value: T) -> Option<RawId> {
        let i = index as usize;
        while self.slots.len() <= i {
            self.slots.push(Slot::Free { gen: 0, next: None });
        }
        let gen = match &self.slots[i] {
            Slot::Free { gen, .. } => *gen,
            Slot::Used { .. } => return None,
        };
        self.slots[i] = Slot::Used { gen, value };
        self.len += 1;
        self.free_stale = true;
        Some(RawId { index, gen })
    }

    /// Links every free slot, lowest first, when [`Arena::insert_at`] has placed objects since.
    fn relink_free(&mut self) {
        if !self.free_stale {
            return;
        }
        self.free_stale = false;
        let mut next = None;
        for (i, s) in self.slots.iter_mut().enumerate().rev() {
            if let Slot::Free { next: n, .. } = s {
                *n = next;
                next = Some(i as u32);
            }
        }
        self.free = next;
    }

    pub(crate) fn remove(&mut self, id: RawId) -> Option<T> {
        self.relink_free();
        let slot = self.slots.get_mut(id.index as usize)?;
        match slot {
            Slot::Used { gen, .. } if *gen == id.gen => {
                let gen = *gen;
                let old = core::mem::replace(slot, Slot::Free { gen, next: self.free });
                self.free = Some(id.index);
                self.len -= 1;
                match old {
                    Slot::Used { value, .. } => Some(value),
                    Slot::Free { .. } => None,
                }
            }
            _ => None,
        }
    }

    pub(crate) fn get(&self, id: RawId) -> Option<&T> {
        match self.slots.get(id.index as usize)? {
            Slot::Used { gen, value } if *gen == id.gen => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: RawId) -> Option<&mut T> {
        match self.slots.get_mut(id.index as usize)? {
            Slot::Used { gen, value } if *gen == id.gen => Some(value),
            _ => None,
        }
    }

    /// True when slot `index` holds an object.
    pub(crate) fn get_at(&self, index: u32) -> bool {
        matches!(self.slots.get(index as usize), Some(Slot::Used { .. }))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (RawId, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Used { gen, value } => Some((RawId { index: i as u32, gen: *gen }, value)),
            Slot::Free { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_go_back_to_their_slots() {
        let mut a = Arena::default();
        let x = a.insert_at(3, "x").unwrap();
        assert_eq!(x.index, 3);
        assert!(a.insert_at(3, "again").is_none());
        let y = a.insert("y");
        assert_eq!(y.index, 0, "free slots below are reused first");
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn stale_ids_find_nothing() {
        let mut a = Arena::default();
        let x = a.insert("x");
        assert_eq!(a.remove(x), Some("x"));
        let y = a.insert("y");
        assert_eq!(x.index, y.index);
        assert_eq!(a.get(x), None);
        assert_eq!(a.get(y), Some(&"y"));
        assert_eq!(a.len(), 1);
    }
}
