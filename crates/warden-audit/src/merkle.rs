//! The RFC 9162 (Certificate Transparency v2) Merkle tree over the audit records: leaf and
//! node hashing, the incremental right edge of a growing log, inclusion and consistency
//! proofs, and their verification (ported from the algorithm in RFC 9162 §2.1.3.2 and
//! §2.1.4.2, checked against the transparency-dev vectors in `../shared/vectors/merkle`).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `MTH({})`: the root of the empty tree, SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexBeyondSize { index: u64, size: u64 },
    #[error("the first tree ({size1}) is larger than the second ({size2})")]
    Shrinking { size1: u64, size2: u64 },
    #[error("a hash has {0} bytes, not 32")]
    HashSize(usize),
    #[error("the proof has {got} hashes where {want} are needed")]
    ProofSize { got: usize, want: usize },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyTree,
    #[error("the proof is empty")]
    EmptyProof,
    #[error("the computed root does not match the expected root")]
    RootMismatch,
}

/// The right edge of a log grown from leaf 0: the roots of its perfect subtrees, largest
/// first (one per set bit of the size). Appending is O(1) amortised; the root O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its stored hashes; `None` when their count does not match
    /// the size (one per set bit).
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// How many leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first (what `from_parts` takes back).
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends the leaf whose hash is `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing 1 bit of the old size is a full subtree of the same height as the
        // one being carried: merge them, as binary addition carries.
        let mut carry = self.size;
        while carry & 1 == 1 {
            let left = self.nodes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            carry >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// `MTH` of a range of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// `PATH(index, D[n])`: the inclusion proof of leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(leaves, index, &mut out);
    Some(out)
}

fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(left, m, out);
        out.push(root(right));
    } else {
        path(right, m - k, out);
        out.push(root(left));
    }
}

/// `PROOF(m, D[n])`: the consistency proof between the first `m` leaves and all of them.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    if m > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 {
        subproof(m, leaves, true, &mut out);
    }
    Some(out)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(m, left, whole, out);
        out.push(root(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root(left));
    }
}

fn as_hash(b: &[u8]) -> Result<Hash, ProofError> {
    b.try_into().map_err(|_| ProofError::HashSize(b.len()))
}

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, ProofError> {
    proof.iter().map(|p| as_hash(p)).collect()
}

fn matches(computed: &Hash, expected: &[u8]) -> Result<(), ProofError> {
    if computed.as_slice() == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// (inner, border): how many proof hashes lie below the point where the paths of `index`
/// and `size - 1` meet, and how many on the right border above it.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, h)
        } else {
            node_hash(h, &seed)
        };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// Checks that `leaf` (a leaf hash) is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let leaf = as_hash(leaf)?;
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::ProofSize {
            got: proof.len(),
            want: inner + border,
        });
    }
    let proof = hashes(proof)?;
    let (below, border) = proof.split_at(inner);
    let r = chain_inner(leaf, below, index);
    matches(&chain_border_right(r, border), root)
}

/// Checks that the tree of `size1` with `root1` is a prefix of the tree of `size2` with
/// `root2`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Vec<u8>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::Shrinking { size1, size2 });
    }
    if size1 == 0 {
        // Every tree extends the empty one: a proof from size 0 proves nothing, and a
        // verifier that accepted one would accept any second root (RFC 9162 §2.1.4.2
        // starts from a non-empty first tree).
        return Err(ProofError::EmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::ProofSize {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::EmptyProof);
    }
    let proof = hashes(proof)?;
    let (inner, border) = decompose(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    let inner = inner - shift;
    // The proof starts with the root of the subtree of size 2^shift, unless size1 is that
    // subtree itself, whose root is root1.
    let (seed, rest) = match proof.split_first() {
        _ if size1 == 1 << shift => (as_hash(root1)?, &proof[..]),
        Some((first, rest)) => (*first, rest),
        None => return Err(ProofError::EmptyProof),
    };
    if rest.len() != inner + border {
        return Err(ProofError::ProofSize {
            got: proof.len(),
            want: inner + border + usize::from(size1 != 1 << shift),
        });
    }
    let mask = (size1 - 1) >> shift;
    let (below, border) = rest.split_at(inner);
    let h1 = chain_inner_right(seed, below, mask);
    matches(&chain_border_right(h1, border), root1)?;
    let h2 = chain_inner(seed, below, mask);
    matches(&chain_border_right(h2, border), root2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn v(p: &[Hash]) -> Vec<Vec<u8>> {
        p.iter().map(|h| h.to_vec()).collect()
    }

    #[test]
    fn frontier_root_equals_the_recursive_root() {
        let all = leaves(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for (i, l) in all.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root(&all[..=i]), "size {}", i + 1);
            let back = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
            assert_eq!(back, f);
        }
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
    }

    /// Every proof this module makes verifies, and none verifies for another leaf or root.
    #[test]
    fn generated_proofs_verify_and_only_for_their_leaf() {
        let all = leaves(33);
        for n in 1..=all.len() {
            let r = root(&all[..n]);
            for i in 0..n {
                let p = v(&inclusion_proof(&all[..n], i).unwrap());
                verify_inclusion(i as u64, n as u64, &all[i], &p, &r).unwrap();
                let other = all[(i + 1) % all.len()];
                assert!(verify_inclusion(i as u64, n as u64, &other, &p, &r).is_err());
            }
            for m in 1..=n {
                let p = v(&consistency_proof(&all[..n], m).unwrap());
                let r1 = root(&all[..m]);
                verify_consistency(m as u64, n as u64, &p, &r1, &r).unwrap();
                if m > 0 && m < n {
                    let wrong = root(&all[1..=m]);
                    assert!(verify_consistency(m as u64, n as u64, &p, &wrong, &r).is_err());
                }
            }
        }
    }
}
