// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title KeyRegistry: the on-chain anchor of keyreg subject logs.
/// @notice Three anchoring paths share one contract:
///  - direct head anchoring: the contract recomputes each event's EIP-712 digest and checks the
///    controllers' signatures itself (ecrecover, low-s, strictly ascending signers, threshold), so a
///    relayer can only publish heads the subject signed; anyone may pay to relay;
///  - batch anchoring: anyone commits the root of the sparse Merkle tree of subject heads
///    (node/core/merkle.py); inclusion is checked off-chain against the stored root;
///  - governance revocation: the governor a subject named at inception (and nobody else) may revoke
///    one of its keys, or the whole subject, from an effective time.
/// The contract enforces the authority rules of the protocol (who may sign the next event, chain
/// linking, pre-rotation); content rules (key ids, retirements, sizes) are enforced off-chain by the
/// same log validator every node runs. See docs/contracts.md for the ABI, the storage layout and the
/// calldata encoding of each event kind.
contract KeyRegistry {
    // ------------------------------------------------------------------------------------------
    // Event kinds (same order as node.core.records.KINDS)
    uint8 public constant KIND_INCEPTION = 0;
    uint8 public constant KIND_UPDATE = 1;
    uint8 public constant KIND_ROTATION = 2;
    uint8 public constant KIND_REVOCATION = 3;

    // ------------------------------------------------------------------------------------------
    // EIP-712 type hashes: encodeType of each primary type followed by its referenced types sorted
    // by name. They must equal node.core.eip712.TYPE_HASH (tested).
    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant INCEPTION_TYPEHASH = keccak256(
        "Inception(uint64 timestamp,address[] controllers,uint8 threshold,bytes32 nextCommitment,address governor,"
        "PublishedKey[] keys,string metadata)"
        "PublishedKey(string keyId,string alg,bytes publicKey,string[] purposes,uint64 notBefore,uint64 notAfter)"
    );
    bytes32 public constant UPDATE_TYPEHASH = keccak256(
        "Update(bytes32 subject,uint64 seq,bytes32 prev,uint64 timestamp,PublishedKey[] publish,KeyRetirement[] retire,"
        "bool setMetadata,string metadata)"
        "KeyRetirement(string keyId,uint64 notAfter)"
        "PublishedKey(string keyId,string alg,bytes publicKey,string[] purposes,uint64 notBefore,uint64 notAfter)"
    );
    bytes32 public constant ROTATION_TYPEHASH = keccak256(
        "Rotation(bytes32 subject,uint64 seq,bytes32 prev,uint64 timestamp,address[] controllers,uint8 threshold,"
        "bytes32 nextCommitment)"
    );
    bytes32 public constant REVOCATION_TYPEHASH = keccak256(
        "Revocation(bytes32 subject,uint64 seq,bytes32 prev,uint64 timestamp,string keyId,uint64 effectiveAt,"
        "string reason)"
    );
    bytes32 private constant _NAME_HASH = keccak256("keyreg");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    /// keccak256("") : a Revocation whose keyId is empty revokes the whole subject.
    bytes32 private constant _EMPTY_STRING_HASH = keccak256("");
    /// secp256k1 n / 2: signatures with a larger s are rejected (EIP-2), so each has one encoding.
    uint256 private constant _HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ------------------------------------------------------------------------------------------
    // Storage. Layout is part of the interface: offline verifiers read the head slots with
    // eth_getProof (docs/contracts.md section 3). Do not reorder.

    /// Per-subject state. Five slots from base = keccak256(abi.encode(subject, uint256(0))):
    ///  base+0: seq (bits 0..63) | timestamp (64..127) | kind (128..135) | revoked (136..143)
    ///  base+1: head digest
    ///  base+2: commitment to the current controller set (same formula as nextCommitment)
    ///  base+3: nextCommitment (0 = the subject can never rotate)
    ///  base+4: governor (0 = no governor may revoke)
    /// Invariant: head != 0 iff the subject exists; head is the digest of the event at seq.
    struct Subject {
        uint64 seq;
        uint64 timestamp;
        uint8 kind;
        bool revoked;
        bytes32 head;
        bytes32 controllers;
        bytes32 nextCommitment;
        address governor;
    }

    /// A batch root as first anchored: one slot, never overwritten.
    struct Batch {
        uint48 blockNumber;
        uint48 timestamp;
        address submitter;
    }

    /// A direct anchor in anchorEvents: the same fields the single-event entry points take.
    /// body words by kind (EIP-712 member encodings, in type order after the fixed fields):
    ///  inception:  [nextCommitment, governor (address as word), hash(keys), hash(metadata)]
    ///  update:     [hash(publish), hash(retire), setMetadata (0/1), hash(metadata)]
    ///  rotation:   [nextCommitment, 0, 0, 0]
    ///  revocation: [hash(keyId), effectiveAt, hash(reason), 0]
    /// subject, seq and prev are zero for an inception.
    struct EventInput {
        uint8 kind;
        bytes32 subject;
        uint64 seq;
        bytes32 prev;
        uint64 timestamp;
        bytes32[4] body;
        address[] controllers;
        uint8 threshold;
        bytes signatures;
    }

    mapping(bytes32 subject => Subject) private _subjects; // slot 0
    mapping(bytes32 root => Batch) private _batches; // slot 1
    /// Number of batch roots anchored so far; batch ids are 1, 2, ...
    uint256 public batchCount; // slot 2
    /// keccak256(keyId) ("" = whole subject) -> effective time of a governance revocation (0 = none).
    mapping(bytes32 subject => mapping(bytes32 keyIdHash => uint64 effectiveAt)) public governanceRevokedAt; // slot 3

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    // ------------------------------------------------------------------------------------------
    // Events

    /// A head was anchored directly (signatures verified by this contract).
    event HeadAnchored(bytes32 indexed subject, uint64 seq, bytes32 digest, uint8 kind);
    /// A recovery rotation replaced the anchored non-establishment head at the same seq.
    event HeadReplaced(bytes32 indexed subject, uint64 seq, bytes32 replacedDigest, bytes32 digest);
    /// A batch root was anchored; heads inside it are proven off-chain against root.
    event BatchAnchored(uint256 indexed batchId, bytes32 indexed root, uint32 count, address submitter);
    /// The subject's governor revoked keyId ("" = the whole subject) from effectiveAt.
    event GovernanceRevoked(
        bytes32 indexed subject,
        bytes32 indexed keyIdHash,
        string keyId,
        uint64 effectiveAt,
        bytes32 reasonHash,
        uint256 indexed proposalId,
        address governor
    );

    // ------------------------------------------------------------------------------------------
    // Errors

    error UnknownSubject(bytes32 subject);
    error SubjectExists(bytes32 subject);
    error SubjectIsRevoked(bytes32 subject);
    error WrongSeq(uint64 expected, uint64 got);
    error WrongPrev(bytes32 expected, bytes32 got);
    error TimestampBeforeHead(uint64 head, uint64 got);
    error WrongKind(uint8 kind);
    error NonCanonicalBody();
    error BadControllerSet();
    error BadThreshold(uint8 threshold, uint256 controllers);
    error ControllersMismatch();
    error NoNextCommitment();
    error CommitmentMismatch();
    error BadSignaturesLength(uint256 length);
    error HighS(uint256 index);
    error BadV(uint256 index);
    error InvalidSignature(uint256 index);
    error SignersNotAscending(uint256 index);
    error NotAController(address signer);
    error BelowThreshold(uint256 signatures, uint256 threshold);
    error NotRecoverable(bytes32 subject);
    error DisplacedHeadMismatch();
    error ZeroRoot();
    error BatchExists(bytes32 root);
    error NoGovernor(bytes32 subject);
    error NotGovernor(address caller);
    error ZeroEffectiveTime();
    error AlreadyRevokedEarlier(uint64 effectiveAt);

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------------------------------
    // Direct anchoring

    /// Anchor an inception (seq 0). The subject id is the inception's EIP-712 digest; returns it.
    /// keysHash / metadataHash are the EIP-712 encodings of the keys array and the metadata string.
    function anchorInception(
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        address governor,
        bytes32 keysHash,
        bytes32 metadataHash,
        bytes calldata signatures
    ) external returns (bytes32 subject) {
        bytes32[4] memory body = [nextCommitment, bytes32(uint256(uint160(governor))), keysHash, metadataHash];
        return _anchorInception(timestamp, controllers, threshold, body, signatures);
    }

    /// Anchor an Update (kind 1) or a Revocation (kind 3), signed by a threshold of the current
    /// controllers, which the caller lists (they must match the stored commitment).
    function anchorUpdate(
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body,
        address[] calldata controllers,
        uint8 threshold,
        bytes calldata signatures
    ) external {
        _anchorNonEstablishment(kind, subject, seq, prev, timestamp, body, controllers, threshold, signatures);
    }

    /// Anchor a Rotation: reveals the pre-committed controller set (which must sign it, to its own
    /// threshold) and commits to the next one.
    function anchorRotation(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        bytes calldata signatures
    ) external {
        Subject storage s = _extend(subject, seq, prev, timestamp);
        bytes32 digest = _rotationDigest(subject, seq, prev, timestamp, controllers, threshold, nextCommitment);
        _rotate(s, controllers, threshold, nextCommitment, digest, signatures);
        _setHead(s, subject, seq, timestamp, KIND_ROTATION, digest);
    }

    /// Recovery: a Rotation signed by the pre-committed next set replaces the anchored head when
    /// that head is an Update or a key-level Revocation at the same seq (typically written by
    /// someone holding the current controller keys). The caller reveals the displaced head's kind,
    /// timestamp and body so the contract can check it has the same prev as the rotation.
    /// A whole-subject revocation is final (ADR 0011): it is never displaced (SubjectIsRevoked).
    /// Whoever holds the current keys may destroy a subject, never take it over.
    function recoverRotation(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        bytes calldata signatures,
        uint8 displacedKind,
        uint64 displacedTimestamp,
        bytes32[4] calldata displacedBody
    ) external {
        Subject storage s = _subjects[subject];
        bytes32 displaced = s.head;
        if (displaced == 0) revert UnknownSubject(subject);
        if (s.revoked) revert SubjectIsRevoked(subject);
        if (s.kind != KIND_UPDATE && s.kind != KIND_REVOCATION) revert NotRecoverable(subject);
        if (seq != s.seq) revert WrongSeq(s.seq, seq);
        if (displacedKind != s.kind) revert DisplacedHeadMismatch();
        // The displaced head, rebuilt with the rotation's prev, must be the stored head: so both
        // events extend the same predecessor.
        if (_nonEstablishmentDigest(displacedKind, subject, seq, prev, displacedTimestamp, displacedBody) != displaced) {
            revert DisplacedHeadMismatch();
        }
        bytes32 digest = _rotationDigest(subject, seq, prev, timestamp, controllers, threshold, nextCommitment);
        _rotate(s, controllers, threshold, nextCommitment, digest, signatures);
        _setHead(s, subject, seq, timestamp, KIND_ROTATION, digest);
        emit HeadReplaced(subject, seq, displaced, digest);
    }

    /// Anchor several events in order (any kinds, any subjects; a subject's events in sequence).
    /// All or nothing: any invalid event reverts the whole call.
    function anchorEvents(EventInput[] calldata events) external {
        for (uint256 i = 0; i < events.length; ++i) {
            EventInput calldata e = events[i];
            if (e.kind == KIND_INCEPTION) {
                if (e.subject != 0 || e.seq != 0 || e.prev != 0) revert NonCanonicalBody();
                if (uint256(e.body[1]) >> 160 != 0) revert NonCanonicalBody();
                _anchorInception(e.timestamp, e.controllers, e.threshold, e.body, e.signatures);
            } else if (e.kind == KIND_ROTATION) {
                if (e.body[1] != 0 || e.body[2] != 0 || e.body[3] != 0) revert NonCanonicalBody();
                Subject storage s = _extend(e.subject, e.seq, e.prev, e.timestamp);
                bytes32 digest =
                    _rotationDigest(e.subject, e.seq, e.prev, e.timestamp, e.controllers, e.threshold, e.body[0]);
                _rotate(s, e.controllers, e.threshold, e.body[0], digest, e.signatures);
                _setHead(s, e.subject, e.seq, e.timestamp, KIND_ROTATION, digest);
            } else {
                _anchorNonEstablishment(
                    e.kind, e.subject, e.seq, e.prev, e.timestamp, e.body, e.controllers, e.threshold, e.signatures
                );
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Batch anchoring

    /// Commit the sparse Merkle root over `count` subject heads. Anyone may submit; a root is
    /// recorded once (block, time, submitter of its first submission) and never overwritten.
    function anchorBatch(bytes32 root, uint32 count) external returns (uint256 batchId) {
        if (root == 0) revert ZeroRoot();
        Batch storage b = _batches[root];
        if (b.blockNumber != 0) revert BatchExists(root);
        _batches[root] = Batch(uint48(block.number), uint48(block.timestamp), msg.sender);
        batchId = ++batchCount;
        emit BatchAnchored(batchId, root, count, msg.sender);
    }

    // ------------------------------------------------------------------------------------------
    // Governance

    /// Revoke keyId ("" = the whole subject) from effectiveAt. Only the governor the subject named
    /// at inception may call this (e.g. an OpenZeppelin Governor or its timelock); a subject that
    /// named none can never be revoked this way. A later call may only move the time earlier.
    function revokeByGovernance(
        bytes32 subject,
        string calldata keyId,
        uint64 effectiveAt,
        bytes32 reasonHash,
        uint256 proposalId
    ) external {
        Subject storage s = _subjects[subject];
        if (s.head == 0) revert UnknownSubject(subject);
        address governor = s.governor;
        if (governor == address(0)) revert NoGovernor(subject);
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        if (effectiveAt == 0) revert ZeroEffectiveTime();
        bytes32 keyIdHash = keccak256(bytes(keyId));
        uint64 existing = governanceRevokedAt[subject][keyIdHash];
        if (existing != 0 && existing <= effectiveAt) revert AlreadyRevokedEarlier(existing);
        governanceRevokedAt[subject][keyIdHash] = effectiveAt;
        emit GovernanceRevoked(subject, keyIdHash, keyId, effectiveAt, reasonHash, proposalId, governor);
    }

    // ------------------------------------------------------------------------------------------
    // Views

    /// The anchored head of a subject (seq 0 and digest 0 if unknown).
    function headOf(bytes32 subject) external view returns (uint64 seq, bytes32 digest) {
        Subject storage s = _subjects[subject];
        return (s.seq, s.head);
    }

    /// Everything stored for a subject.
    function subjectState(bytes32 subject)
        external
        view
        returns (
            uint64 seq,
            uint64 timestamp,
            uint8 kind,
            bool revoked,
            bytes32 head,
            bytes32 controllersCommitment,
            bytes32 nextCommitment,
            address governor
        )
    {
        Subject storage s = _subjects[subject];
        return (s.seq, s.timestamp, s.kind, s.revoked, s.head, s.controllers, s.nextCommitment, s.governor);
    }

    /// The storage slot of a subject's packed (seq, timestamp, kind, revoked) word; the head digest
    /// is at headSlot + 1. Equals uint256(keccak256(abi.encode(subject, uint256(0)))).
    function headSlot(bytes32 subject) external pure returns (uint256 slot) {
        return uint256(keccak256(abi.encode(subject, uint256(0))));
    }

    /// When and by whom a batch root was first anchored (all zero if never).
    function batchOf(bytes32 root) external view returns (uint48 blockNumber, uint48 timestamp, address submitter) {
        Batch storage b = _batches[root];
        return (b.blockNumber, b.timestamp, b.submitter);
    }

    /// The EIP-712 domain separator for (name "keyreg", version "1", this chain, this contract).
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    // ------------------------------------------------------------------------------------------
    // Internals

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// keccak256(abi.encodePacked(uint256(threshold), controllers)): the pre-rotation commitment
    /// formula, also used to store the current set.
    function _commitment(address[] calldata controllers, uint8 threshold) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(uint256(threshold), controllers));
    }

    function _rotationDigest(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment
    ) private view returns (bytes32) {
        return _digest(
            keccak256(
                abi.encode(
                    ROTATION_TYPEHASH,
                    subject,
                    seq,
                    prev,
                    timestamp,
                    keccak256(abi.encodePacked(controllers)),
                    threshold,
                    nextCommitment
                )
            )
        );
    }

    function _nonEstablishmentDigest(
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body
    ) private view returns (bytes32) {
        bytes32 typeHash;
        if (kind == KIND_UPDATE) {
            typeHash = UPDATE_TYPEHASH;
            if (uint256(body[2]) > 1) revert NonCanonicalBody(); // setMetadata is a bool
            return _digest(keccak256(abi.encode(typeHash, subject, seq, prev, timestamp, body[0], body[1], body[2], body[3])));
        }
        if (kind != KIND_REVOCATION) revert WrongKind(kind);
        if (body[3] != 0 || uint256(body[1]) >> 64 != 0) revert NonCanonicalBody(); // effectiveAt is uint64
        typeHash = REVOCATION_TYPEHASH;
        return _digest(keccak256(abi.encode(typeHash, subject, seq, prev, timestamp, body[0], body[1], body[2])));
    }

    function _anchorInception(
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32[4] memory body,
        bytes calldata signatures
    ) private returns (bytes32 subject) {
        _checkControllerSet(controllers, threshold);
        subject = _digest(
            keccak256(
                abi.encode(
                    INCEPTION_TYPEHASH,
                    timestamp,
                    keccak256(abi.encodePacked(controllers)),
                    threshold,
                    body[0],
                    body[1],
                    body[2],
                    body[3]
                )
            )
        );
        Subject storage s = _subjects[subject];
        if (s.head != 0) revert SubjectExists(subject);
        _verify(subject, controllers, threshold, signatures);
        s.controllers = _commitment(controllers, threshold);
        if (body[0] != 0) s.nextCommitment = body[0];
        address governor = address(uint160(uint256(body[1])));
        if (governor != address(0)) s.governor = governor;
        _setHead(s, subject, 0, timestamp, KIND_INCEPTION, subject);
    }

    function _anchorNonEstablishment(
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body,
        address[] calldata controllers,
        uint8 threshold,
        bytes calldata signatures
    ) private {
        Subject storage s = _extend(subject, seq, prev, timestamp);
        if (_commitment(controllers, threshold) != s.controllers) revert ControllersMismatch();
        bytes32 digest = _nonEstablishmentDigest(kind, subject, seq, prev, timestamp, body);
        _verify(digest, controllers, threshold, signatures);
        // A Revocation with an empty keyId revokes the whole subject: nothing may follow it.
        if (kind == KIND_REVOCATION && body[0] == _EMPTY_STRING_HASH) s.revoked = true;
        _setHead(s, subject, seq, timestamp, kind, digest);
    }

    /// The chain rules every non-inception event obeys: the subject exists and is not revoked,
    /// seq is the next one, prev is the anchored head, time does not go backwards.
    function _extend(bytes32 subject, uint64 seq, bytes32 prev, uint64 timestamp)
        private
        view
        returns (Subject storage s)
    {
        s = _subjects[subject];
        bytes32 head = s.head;
        if (head == 0) revert UnknownSubject(subject);
        if (s.revoked) revert SubjectIsRevoked(subject);
        if (seq != s.seq + 1) revert WrongSeq(s.seq + 1, seq);
        if (prev != head) revert WrongPrev(head, prev);
        if (timestamp < s.timestamp) revert TimestampBeforeHead(s.timestamp, timestamp);
    }

    /// Check a rotation against the stored pre-rotation commitment and its signatures, then move
    /// the controller set forward.
    function _rotate(
        Subject storage s,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        bytes32 digest,
        bytes calldata signatures
    ) private {
        bytes32 committed = s.nextCommitment;
        if (committed == 0) revert NoNextCommitment();
        _checkControllerSet(controllers, threshold);
        if (_commitment(controllers, threshold) != committed) revert CommitmentMismatch();
        _verify(digest, controllers, threshold, signatures);
        s.controllers = committed;
        s.nextCommitment = nextCommitment;
    }

    function _setHead(Subject storage s, bytes32 subject, uint64 seq, uint64 timestamp, uint8 kind, bytes32 digest)
        private
    {
        s.seq = seq;
        s.timestamp = timestamp;
        s.kind = kind;
        s.head = digest;
        emit HeadAnchored(subject, seq, digest, kind);
    }

    /// Controllers strictly ascending (hence distinct), threshold in 1..n.
    function _checkControllerSet(address[] calldata controllers, uint8 threshold) private pure {
        uint256 n = controllers.length;
        if (n == 0) revert BadControllerSet();
        for (uint256 i = 1; i < n; ++i) {
            if (controllers[i - 1] >= controllers[i]) revert BadControllerSet();
        }
        if (threshold == 0 || threshold > n) revert BadThreshold(threshold, n);
    }

    /// Verify 65-byte r||s||v signatures over digest: v in {27, 28}, low s, signers strictly
    /// ascending, each one of `controllers` (sorted ascending), at least `threshold` of them.
    function _verify(bytes32 digest, address[] calldata controllers, uint256 threshold, bytes calldata signatures)
        private
        pure
    {
        uint256 count = signatures.length / 65;
        if (signatures.length != count * 65) revert BadSignaturesLength(signatures.length);
        if (count < threshold) revert BelowThreshold(count, threshold);
        address last = address(0);
        uint256 j = 0;
        uint256 n = controllers.length;
        for (uint256 i = 0; i < count; ++i) {
            bytes32 r;
            bytes32 sv;
            uint8 v;
            assembly ("memory-safe") {
                let p := add(signatures.offset, mul(i, 65))
                r := calldataload(p)
                sv := calldataload(add(p, 32))
                v := byte(0, calldataload(add(p, 64)))
            }
            if (uint256(sv) > _HALF_N) revert HighS(i);
            if (v != 27 && v != 28) revert BadV(i);
            address signer = ecrecover(digest, v, r, sv);
            if (signer == address(0)) revert InvalidSignature(i);
            if (signer <= last) revert SignersNotAscending(i);
            last = signer;
            // Both lists ascend, so one forward walk checks membership of every signer.
            while (j < n && controllers[j] < signer) ++j;
            if (j == n || controllers[j] != signer) revert NotAController(signer);
            ++j;
        }
    }
}
