//! Terms of held entries, kept as runs: a Raft log changes term rarely, so a few runs cover it.

/// Runs of `(first index of the run, term)`, ascending by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermRuns {
    runs: Vec<(u64, u64)>,
}

impl TermRuns {
    /// Records that `index` (the next index after every recorded one) has `term`.
    pub fn push(&mut self, index: u64, term: u64) {
        match self.runs.last() {
            Some(&(_, last_term)) if last_term == term => {}
            _ => self.runs.push((index, term)),
        }
    }

    /// The term of `index`, assuming the caller knows it is held.
    pub fn get(&self, index: u64) -> Option<u64> {
        let position = self.runs.partition_point(|&(start, _)| start <= index);
        position.checked_sub(1).map(|p| self.runs[p].1)
    }

    /// Forgets every index after `index`.
    pub fn truncate_after(&mut self, index: u64) {
        let keep = self.runs.partition_point(|&(start, _)| start <= index);
        self.runs.truncate(keep);
    }

    /// Forgets runs that end before `index` (the run covering `index` stays).
    pub fn drop_before(&mut self, index: u64) {
        let covering = self.runs.partition_point(|&(start, _)| start <= index);
        if covering > 1 {
            self.runs.drain(..covering - 1);
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Appends all runs of `other`, whose indexes all follow this one's.
    pub fn extend(&mut self, other: &TermRuns) {
        for &(start, term) in &other.runs {
            self.push(start, term);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs() {
        let mut t = TermRuns::default();
        for (i, term) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 5)] {
            t.push(i, term);
        }
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(2), Some(1));
        assert_eq!(t.get(4), Some(2));
        assert_eq!(t.get(9), Some(5));
        t.truncate_after(3);
        assert_eq!(t.get(4), Some(2));
        t.push(4, 3);
        assert_eq!(t.get(4), Some(3));
        assert_eq!(t.get(3), Some(2));
        t.drop_before(4);
        assert_eq!(t.get(4), Some(3));
        assert_eq!(t.get(3), None);
    }
}
