//! Interning of attribute names and event kinds: each distinct name is stored once and leads
//! refer to it by a small number. Names are never removed, so the table is bounded by a limit
//! instead; names are schema, not personal data.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sync::{Rank, RwLock};

use serde::{Deserialize, Serialize};

/// An interned name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sym(u32);

impl Sym {
    pub fn from_index(index: usize) -> Self {
        Self(index as u32)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A table of names with a fixed capacity.
#[derive(Debug)]
pub struct Interner {
    limit: usize,
    inner: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    ids: HashMap<Arc<str>, Sym, foldhash::fast::RandomState>,
    names: Vec<Arc<str>>,
}

/// The table is full.
#[derive(Debug, thiserror::Error)]
#[error("at most {limit} distinct names are allowed")]
pub struct Full {
    pub limit: usize,
}

impl Interner {
    pub fn new(limit: usize) -> Self {
        Self { limit, inner: RwLock::new(Rank::Interner, Table::default()) }
    }

    pub fn get(&self, name: &str) -> Option<Sym> {
        self.inner.read().ids.get(name).copied()
    }

    /// How many new names `names` would add; lets validation refuse a batch before anything
    /// is interned.
    pub fn room_for<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), Full> {
        let table = self.inner.read();
        let mut new: Vec<&str> = names.into_iter().filter(|n| !table.ids.contains_key(*n)).collect();
        new.sort_unstable();
        new.dedup();
        if table.names.len() + new.len() > self.limit {
            return Err(Full { limit: self.limit });
        }
        Ok(())
    }

    /// Interns `name`. Callers check `room_for` first; past the limit this still interns, so
    /// that replaying an accepted log can never fail.
    pub fn intern(&self, name: &str) -> Sym {
        if let Some(sym) = self.get(name) {
            return sym;
        }
        let mut table = self.inner.write();
        if let Some(sym) = table.ids.get(name) {
            return *sym;
        }
        let sym = Sym::from_index(table.names.len());
        let name: Arc<str> = name.into();
        table.names.push(name.clone());
        table.ids.insert(name, sym);
        sym
    }

    pub fn resolve(&self, sym: Sym) -> Arc<str> {
        self.inner.read().names[sym.index()].clone()
    }

    /// All names in symbol order, copied out, for snapshots and digests.
    pub fn names(&self) -> Vec<String> {
        self.inner.read().names.iter().map(|name| name.to_string()).collect()
    }

    /// Calls `read` with every name, indexed by symbol, under one turn of the table's lock:
    /// `read` must not call out.
    pub fn with_names<T>(&self, read: impl FnOnce(&[Arc<str>]) -> T) -> T {
        read(&self.inner.read().names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_resolves() {
        let interner = Interner::new(10);
        let a = interner.intern("role");
        let b = interner.intern("department");
        assert_eq!(interner.intern("role"), a);
        assert_ne!(a, b);
        assert_eq!(&*interner.resolve(b), "department");
    }

    #[test]
    fn room_for_counts_only_new_distinct_names() {
        let interner = Interner::new(2);
        interner.intern("a");
        assert!(interner.room_for(["a", "b", "b"]).is_ok());
        assert!(interner.room_for(["b", "c"]).is_err());
    }
}
