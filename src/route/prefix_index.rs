//! Rules indexed by the literal prefixes of their path patterns.
//!
//! A rule whose path condition lists only patterns with a literal start
//! (`/api/v1/*`, `/static/*.css`, `/health`) can only match paths that begin
//! with one of those starts. A byte trie of the starts gives, for one request
//! path, the few rules worth testing; a walk costs the length of the path, not
//! the number of rules.

/// One trie node: children by next byte (sorted), and the rules whose prefix
/// ends here (ascending indices).
#[derive(Debug, Default)]
struct Node {
    children: Vec<(u8, u32)>,
    rules: Vec<u32>,
}

/// A byte trie from literal path prefixes to rule indices.
#[derive(Debug)]
pub struct PrefixIndex {
    nodes: Vec<Node>,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex {
            nodes: vec![Node::default()],
        }
    }
}

impl PrefixIndex {
    /// Files rule `rule` under `prefix`. Rules must be inserted in ascending order.
    pub fn insert(&mut self, prefix: &[u8], rule: u32) {
        let mut at = 0usize;
        for &b in prefix {
            let children = &self.nodes[at].children;
            at = match children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len() as u32;
                    self.nodes[at].children.insert(i, (b, next));
                    self.nodes.push(Node::default());
                    next as usize
                }
            };
        }
        let rules = &mut self.nodes[at].rules;
        if rules.last() != Some(&rule) {
            rules.push(rule);
        }
    }

    /// Whether nothing was filed.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].rules.is_empty()
    }

    /// Calls `each` with the rule lists (each ascending) of every prefix of
    /// `path`, shortest first.
    #[inline]
    pub fn for_each_prefix<'a>(&'a self, path: &[u8], mut each: impl FnMut(&'a [u32])) {
        let mut node = &self.nodes[0];
        if !node.rules.is_empty() {
            each(&node.rules);
        }
        for &b in path {
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => node = &self.nodes[node.children[i].1 as usize],
                Err(_) => return,
            }
            if !node.rules.is_empty() {
                each(&node.rules);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(index: &PrefixIndex, path: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.for_each_prefix(path.as_bytes(), |rules| out.extend_from_slice(rules));
        out
    }

    #[test]
    fn every_prefix_of_the_path_and_only_those() {
        let mut index = PrefixIndex::default();
        assert!(index.is_empty());
        index.insert(b"/api/", 0);
        index.insert(b"/api/v1/", 1);
        index.insert(b"/static/", 2);
        index.insert(b"/api/", 3);
        index.insert(b"/api/v1/", 3);
        index.insert(b"/", 4);
        assert_eq!(found(&index, "/api/v1/users"), vec![4, 0, 3, 1, 3]);
        assert_eq!(found(&index, "/api/v2"), vec![4, 0, 3]);
        assert_eq!(found(&index, "/apix"), vec![4]);
        assert_eq!(found(&index, ""), Vec::<u32>::new());
        assert_eq!(found(&index, "/static/a.css"), vec![4, 2]);
    }
}
