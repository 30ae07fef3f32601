// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title KeyRegistry v2: the on-chain anchor of keyreg subject logs (protocol version 2, ADR 0028).
/// @notice Three anchoring paths share one contract:
///  - direct head anchoring: the contract recomputes each event's EIP-712 digest and checks its
///    signatures itself (ecrecover, low-s, strictly ascending signers, threshold) against the
///    authority the event's kind needs: the controllers, or, for an Update only, the operator set
///    the controllers delegated to; a relayer can only publish heads the subject signed; anyone
///    may pay to relay;
///  - batch anchoring: anyone commits the root of the sparse Merkle tree of subject heads
///    (node/core/merkle.py); inclusion is checked off-chain against the stored root;
///  - governance revocation: the governor in force for a subject (named by its inception or its
///    latest rotation, and nobody else) may revoke one of its keys, or the whole subject.
/// The contract enforces the authority rules of the protocol (who may sign the next event, chain
/// linking, pre-rotation, controllers over operators at the head); content rules (key ids,
/// retirements, sizes, the operator limits of ADR 0028 section 5) are enforced off-chain by the
/// same log validator every node runs. See docs/contracts.md for the ABI, the storage layout and
/// the calldata encoding of each event kind.
contract KeyRegistry {
    // ------------------------------------------------------------------------------------------
    // Event kinds (same order as keyreg.core.records.KINDS)
    uint8 public constant KIND_INCEPTION = 0;
    uint8 public constant KIND_UPDATE = 1;
    uint8 public constant KIND_ROTATION = 2;
    uint8 public constant KIND_REVOCATION = 3;
    uint8 public constant KIND_DELEGATION = 4;

    /// Operator set bounds (ADR 0028 section 3).
    uint256 public constant MAX_OPERATORS = 16;
    uint256 public constant MAX_OPERATOR_KEYS = 1024;

    // ------------------------------------------------------------------------------------------
    // EIP-712 type hashes: encodeType of each primary type followed by its referenced types sorted
    // by name. They must equal keyreg.core.eip712.TYPE_HASH (tested).
    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant OPERATORSET_TYPEHASH = keccak256(
        "OperatorSet(address[] operators,uint8 threshold,string[] purposes,uint64 maxValidity,uint16 maxKeys)"
    );
    bytes32 public constant INCEPTION_TYPEHASH = keccak256(
        "Inception(uint64 timestamp,address[] controllers,uint8 threshold,bytes32 nextCommitment,address governor,"
        "OperatorSet operators,PublishedKey[] keys,string metadata)"
        "OperatorSet(address[] operators,uint8 threshold,string[] purposes,uint64 maxValidity,uint16 maxKeys)"
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
        "bytes32 nextCommitment,address governor,OperatorSet operators)"
        "OperatorSet(address[] operators,uint8 threshold,string[] purposes,uint64 maxValidity,uint16 maxKeys)"
    );
    bytes32 public constant REVOCATION_TYPEHASH = keccak256(
        "Revocation(bytes32 subject,uint64 seq,bytes32 prev,uint64 timestamp,string keyId,uint64 effectiveAt,"
        "string reason)"
    );
    bytes32 public constant DELEGATION_TYPEHASH = keccak256(
        "Delegation(bytes32 subject,uint64 seq,bytes32 prev,uint64 timestamp,OperatorSet operators)"
        "OperatorSet(address[] operators,uint8 threshold,string[] purposes,uint64 maxValidity,uint16 maxKeys)"
    );
    bytes32 private constant _NAME_HASH = keccak256("keyreg");
    bytes32 private constant _VERSION_HASH = keccak256("2");
    /// keccak256("") : a Revocation whose keyId is empty revokes the whole subject; also the
    /// EIP-712 encoding of an empty array (the purposes of "no operators").
    bytes32 private constant _EMPTY_HASH = keccak256("");
    /// secp256k1 n / 2: signatures with a larger s are rejected (EIP-2), so each has one encoding.
    uint256 private constant _HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ------------------------------------------------------------------------------------------
    // Storage. Layout is part of the interface: offline verifiers read the head slots with
    // eth_getProof (docs/contracts.md section 3). Do not reorder.

    /// Per-subject state. Six slots from base = keccak256(abi.encode(subject, uint256(0))):
    ///  base+0: seq (bits 0..63) | timestamp (64..127) | kind (128..135) | revoked (136..143)
    ///          | byOperators (144..151): the head is an Update signed by the operators
    ///  base+1: head digest
    ///  base+2: commitment to the current controller set (same formula as nextCommitment)
    ///  base+3: nextCommitment (0 = the subject can never rotate)
    ///  base+4: governor in force (0 = no governor may revoke)
    ///  base+5: commitment to the operator set in force (same formula; 0 = no operators)
    /// Invariant: head != 0 iff the subject exists; head is the digest of the event at seq.
    struct Subject {
        uint64 seq;
        uint64 timestamp;
        uint8 kind;
        bool revoked;
        bool byOperators;
        bytes32 head;
        bytes32 controllers;
        bytes32 nextCommitment;
        address governor;
        bytes32 operators;
    }

    /// A batch root as first anchored: one slot, never overwritten.
    struct Batch {
        uint48 blockNumber;
        uint48 timestamp;
        address submitter;
    }

    /// An operator set as it is signed (EIP-712 struct OperatorSet), with its string[] purposes
    /// already hashed (keccak256 of the concatenated keccak256 of each purpose). "No operators" is
    /// exactly: no addresses, threshold 0, purposesHash = keccak256(""), maxValidity 0, maxKeys 0.
    struct OperatorSet {
        address[] operators;
        uint8 threshold;
        bytes32 purposesHash;
        uint64 maxValidity;
        uint16 maxKeys;
    }

    /// A direct anchor in anchorEvents: the fields the single-event entry points take.
    /// body words by kind (EIP-712 member encodings, in type order after the fixed fields):
    ///  inception:  [nextCommitment, governor (address as word), hash(keys), hash(metadata)]
    ///  update:     [hash(publish), hash(retire), setMetadata (0/1), hash(metadata)]
    ///  rotation:   [nextCommitment, governor (address as word), 0, 0]
    ///  revocation: [hash(keyId), effectiveAt, hash(reason), 0]
    ///  delegation: [0, 0, 0, 0]
    /// subject, seq and prev are zero for an inception. signers/threshold: the set that signed
    /// (inception: its controllers; rotation: the revealed set; update, revocation, delegation:
    /// the controllers in force, or the operators in force for an update with byOperators set).
    /// operators: the new operator set of an inception, rotation or delegation; all zero for an
    /// update or a revocation.
    struct EventInput {
        uint8 kind;
        bytes32 subject;
        uint64 seq;
        bytes32 prev;
        uint64 timestamp;
        bytes32[4] body;
        address[] signers;
        uint8 threshold;
        bool byOperators;
        OperatorSet operators;
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
    /// A head anchored at seq was replaced at the same seq: by a recovery rotation (recoverRotation)
    /// or by a controller-signed event replacing an operator-signed update (supersede).
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
    error BadOperatorSet();
    error ControllersMismatch();
    error OperatorsMismatch();
    error NoOperators(bytes32 subject);
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
    error NotOperatorSigned(bytes32 subject);
    error SameHead();
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
        OperatorSet calldata operators,
        bytes32 keysHash,
        bytes32 metadataHash,
        bytes calldata signatures
    ) external returns (bytes32 subject) {
        bytes32[4] memory body = [nextCommitment, bytes32(uint256(uint160(governor))), keysHash, metadataHash];
        return _anchorInception(timestamp, controllers, threshold, body, operators, signatures);
    }

    /// Anchor an Update (kind 1) or a Revocation (kind 3) signed by a threshold of the controllers
    /// in force, which the caller lists (they must match the stored commitment).
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
        Subject storage s = _extend(subject, seq, prev, timestamp);
        bytes32 digest = _applyNonEstablishment(s, kind, subject, seq, prev, timestamp, body, controllers, threshold, signatures);
        _setHead(s, subject, seq, timestamp, kind, false, digest);
    }

    /// Anchor an Update signed by a threshold of the operators in force, which the caller lists
    /// (they must match the stored operator commitment). Only updates: the operators may not
    /// revoke, rotate or delegate. The operator limits (purposes, validity, key count) are content
    /// rules checked off-chain; a head that breaks them is superseded by the controllers.
    function anchorOperatorUpdate(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body,
        address[] calldata operators,
        uint8 threshold,
        bytes calldata signatures
    ) external {
        Subject storage s = _extend(subject, seq, prev, timestamp);
        bytes32 digest = _applyOperatorUpdate(s, subject, seq, prev, timestamp, body, operators, threshold, signatures);
        _setHead(s, subject, seq, timestamp, KIND_UPDATE, true, digest);
    }

    /// Anchor a Rotation: reveals the pre-committed controller set (which must sign it, to its own
    /// threshold), commits to the next one, and sets the governor (zero = none) and the operator
    /// set in force.
    function anchorRotation(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        address governor,
        OperatorSet calldata operators,
        bytes calldata signatures
    ) external {
        Subject storage s = _extend(subject, seq, prev, timestamp);
        bytes32 digest =
            _applyRotation(s, subject, seq, prev, timestamp, controllers, threshold, nextCommitment, governor, operators, signatures);
        _setHead(s, subject, seq, timestamp, KIND_ROTATION, false, digest);
    }

    /// Anchor a Delegation: the controllers in force (threshold) replace the operator set.
    function anchorDelegation(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        OperatorSet calldata operators,
        address[] calldata controllers,
        uint8 threshold,
        bytes calldata signatures
    ) external {
        Subject storage s = _extend(subject, seq, prev, timestamp);
        bytes32 digest = _applyDelegation(s, subject, seq, prev, timestamp, operators, controllers, threshold, signatures);
        _setHead(s, subject, seq, timestamp, KIND_DELEGATION, false, digest);
    }

    /// Recovery: a Rotation signed by the pre-committed next set replaces the anchored head when
    /// that head is an Update, a key-level Revocation or a Delegation at the same seq (typically
    /// written by someone holding the current controller keys, or by the operators). The caller
    /// reveals the displaced head's kind, timestamp and body (for a delegation: [hashStruct(its
    /// OperatorSet), 0, 0, 0]) so the contract can check it has the same prev as the rotation.
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
        address governor,
        OperatorSet calldata operators,
        bytes calldata signatures,
        uint8 displacedKind,
        uint64 displacedTimestamp,
        bytes32[4] calldata displacedBody
    ) external {
        Subject storage s = _subjects[subject];
        bytes32 displaced = s.head;
        if (displaced == 0) revert UnknownSubject(subject);
        if (s.revoked) revert SubjectIsRevoked(subject);
        uint8 headKind = s.kind;
        if (headKind == KIND_INCEPTION || headKind == KIND_ROTATION) revert NotRecoverable(subject);
        if (seq != s.seq) revert WrongSeq(s.seq, seq);
        if (displacedKind != headKind) revert DisplacedHeadMismatch();
        // The displaced head, rebuilt with the rotation's prev, must be the stored head: so both
        // events extend the same predecessor.
        if (_displacedDigest(displacedKind, subject, seq, prev, displacedTimestamp, displacedBody) != displaced) {
            revert DisplacedHeadMismatch();
        }
        bytes32 digest =
            _applyRotation(s, subject, seq, prev, timestamp, controllers, threshold, nextCommitment, governor, operators, signatures);
        _setHead(s, subject, seq, timestamp, KIND_ROTATION, false, digest);
        emit HeadReplaced(subject, seq, displaced, digest);
    }

    /// Controllers take the head back from the operators (ADR 0028 section 7 rule 4): `e`, an
    /// event signed by the controllers' authority (an update or revocation or delegation by the
    /// controllers in force, or a rotation by the revealed set) at the anchored head's seq,
    /// replaces that head when it is an operator-signed update extending the same prev. The
    /// caller reveals the displaced update's timestamp and body. Emits HeadAnchored then
    /// HeadReplaced. Refused when the head is controller-signed (NotOperatorSigned): controllers
    /// never race each other here; that is what recoverRotation and fork choice settle.
    function supersede(EventInput calldata e, uint64 displacedTimestamp, bytes32[4] calldata displacedBody) external {
        if (e.kind == KIND_INCEPTION || e.byOperators) revert WrongKind(e.kind);
        Subject storage s = _subjects[e.subject];
        bytes32 displaced = s.head;
        if (displaced == 0) revert UnknownSubject(e.subject);
        if (!s.byOperators) revert NotOperatorSigned(e.subject);
        if (e.seq != s.seq) revert WrongSeq(s.seq, e.seq);
        if (_displacedDigest(KIND_UPDATE, e.subject, e.seq, e.prev, displacedTimestamp, displacedBody) != displaced) {
            revert DisplacedHeadMismatch();
        }
        bytes32 digest = _applyInput(s, e);
        if (digest == displaced) revert SameHead();
        _setHead(s, e.subject, e.seq, e.timestamp, e.kind, false, digest);
        emit HeadReplaced(e.subject, e.seq, displaced, digest);
    }

    /// Anchor several events in order (any kinds, any subjects; a subject's events in sequence).
    /// All or nothing: any invalid event reverts the whole call.
    function anchorEvents(EventInput[] calldata events) external {
        for (uint256 i = 0; i < events.length; ++i) {
            EventInput calldata e = events[i];
            if (e.kind == KIND_INCEPTION) {
                if (e.subject != 0 || e.seq != 0 || e.prev != 0 || e.byOperators) revert NonCanonicalBody();
                if (uint256(e.body[1]) >> 160 != 0) revert NonCanonicalBody();
                _anchorInception(e.timestamp, e.signers, e.threshold, e.body, e.operators, e.signatures);
            } else {
                Subject storage s = _extend(e.subject, e.seq, e.prev, e.timestamp);
                bytes32 digest = _applyInput(s, e);
                _setHead(s, e.subject, e.seq, e.timestamp, e.kind, e.byOperators, digest);
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

    /// Revoke keyId ("" = the whole subject) from effectiveAt. Only the governor in force (named by
    /// the inception or the latest directly anchored rotation) may call this (e.g. an OpenZeppelin
    /// Governor or its timelock); a subject without one can never be revoked this way. A rotation
    /// that changes or drops the governor ends the old one's power here. A later call may only
    /// move the time earlier.
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
            address governor,
            bool byOperators,
            bytes32 operatorsCommitment
        )
    {
        Subject storage s = _subjects[subject];
        return (
            s.seq, s.timestamp, s.kind, s.revoked, s.head, s.controllers, s.nextCommitment, s.governor, s.byOperators, s.operators
        );
    }

    /// The storage slot of a subject's packed (seq, timestamp, kind, revoked, byOperators) word;
    /// the head digest is at headSlot + 1. Equals uint256(keccak256(abi.encode(subject, uint256(0)))).
    function headSlot(bytes32 subject) external pure returns (uint256 slot) {
        return uint256(keccak256(abi.encode(subject, uint256(0))));
    }

    /// When and by whom a batch root was first anchored (all zero if never).
    function batchOf(bytes32 root) external view returns (uint48 blockNumber, uint48 timestamp, address submitter) {
        Batch storage b = _batches[root];
        return (b.blockNumber, b.timestamp, b.submitter);
    }

    /// The EIP-712 domain separator for (name "keyreg", version "2", this chain, this contract).
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// hashStruct(OperatorSet) of a set (purposes given hashed), as signed inside an event.
    function operatorSetHash(OperatorSet calldata operators) external pure returns (bytes32) {
        return _operatorSetHash(operators);
    }

    // ------------------------------------------------------------------------------------------
    // Internals

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// keccak256(abi.encodePacked(uint256(threshold), members)): the pre-rotation commitment
    /// formula, also used to store the current controller set and the operator set.
    function _commitment(address[] calldata members, uint8 threshold) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(uint256(threshold), members));
    }

    function _operatorSetHash(OperatorSet calldata o) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                OPERATORSET_TYPEHASH,
                keccak256(abi.encodePacked(o.operators)),
                o.threshold,
                o.purposesHash,
                o.maxValidity,
                o.maxKeys
            )
        );
    }

    /// Check an operator set's shape (ADR 0028 section 3, the parts the contract relies on) and
    /// return its commitment (0 for "no operators", whose encoding is unique).
    function _operatorCommitment(OperatorSet calldata o) private pure returns (bytes32) {
        uint256 n = o.operators.length;
        if (n == 0) {
            if (o.threshold != 0 || o.purposesHash != _EMPTY_HASH || o.maxValidity != 0 || o.maxKeys != 0) {
                revert BadOperatorSet();
            }
            return 0;
        }
        if (n > MAX_OPERATORS) revert BadOperatorSet();
        for (uint256 i = 1; i < n; ++i) {
            if (o.operators[i - 1] >= o.operators[i]) revert BadOperatorSet();
        }
        if (o.operators[0] == address(0)) revert BadOperatorSet();
        if (o.threshold == 0 || o.threshold > n) revert BadThreshold(o.threshold, n);
        // purposes is 1 to 16 purposes: at least it is not the empty array.
        if (o.purposesHash == _EMPTY_HASH || o.maxValidity == 0 || o.maxKeys == 0 || o.maxKeys > MAX_OPERATOR_KEYS) {
            revert BadOperatorSet();
        }
        return _commitment(o.operators, o.threshold);
    }

    /// An OperatorSet input that must be unused (updates and revocations in anchorEvents).
    function _checkNoOperatorInput(OperatorSet calldata o) private pure {
        if (o.operators.length != 0 || o.threshold != 0 || o.purposesHash != 0 || o.maxValidity != 0 || o.maxKeys != 0) {
            revert NonCanonicalBody();
        }
    }

    function _rotationDigest(
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        address governor,
        bytes32 operatorSetHash_
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
                    nextCommitment,
                    governor,
                    operatorSetHash_
                )
            )
        );
    }

    function _delegationDigest(bytes32 subject, uint64 seq, bytes32 prev, uint64 timestamp, bytes32 operatorSetHash_)
        private
        view
        returns (bytes32)
    {
        return _digest(keccak256(abi.encode(DELEGATION_TYPEHASH, subject, seq, prev, timestamp, operatorSetHash_)));
    }

    /// Digest of an Update or a Revocation from its body words (canonical words enforced).
    function _nonEstablishmentDigest(
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body
    ) private view returns (bytes32) {
        if (kind == KIND_UPDATE) {
            if (uint256(body[2]) > 1) revert NonCanonicalBody(); // setMetadata is a bool
            return _digest(
                keccak256(abi.encode(UPDATE_TYPEHASH, subject, seq, prev, timestamp, body[0], body[1], body[2], body[3]))
            );
        }
        if (kind != KIND_REVOCATION) revert WrongKind(kind);
        if (body[3] != 0 || uint256(body[1]) >> 64 != 0) revert NonCanonicalBody(); // effectiveAt is uint64
        return _digest(keccak256(abi.encode(REVOCATION_TYPEHASH, subject, seq, prev, timestamp, body[0], body[1], body[2])));
    }

    /// Digest of a displaced head (recoverRotation, supersede): an update, a revocation, or a
    /// delegation given as [hashStruct(OperatorSet), 0, 0, 0].
    function _displacedDigest(
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body
    ) private view returns (bytes32) {
        if (kind == KIND_DELEGATION) {
            if (body[1] != 0 || body[2] != 0 || body[3] != 0) revert NonCanonicalBody();
            return _delegationDigest(subject, seq, prev, timestamp, body[0]);
        }
        return _nonEstablishmentDigest(kind, subject, seq, prev, timestamp, body);
    }

    function _anchorInception(
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32[4] memory body,
        OperatorSet calldata operators,
        bytes calldata signatures
    ) private returns (bytes32 subject) {
        _checkControllerSet(controllers, threshold);
        bytes32 operatorCommitment = _operatorCommitment(operators);
        subject = _digest(
            keccak256(
                abi.encode(
                    INCEPTION_TYPEHASH,
                    timestamp,
                    keccak256(abi.encodePacked(controllers)),
                    threshold,
                    body[0],
                    body[1],
                    _operatorSetHash(operators),
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
        if (operatorCommitment != 0) s.operators = operatorCommitment;
        _setHead(s, subject, 0, timestamp, KIND_INCEPTION, false, subject);
    }

    /// Validate one non-inception EventInput whose chain position the caller checked, apply its
    /// effect on the stored sets, and return its digest (the caller sets the head).
    function _applyInput(Subject storage s, EventInput calldata e) private returns (bytes32) {
        uint8 kind = e.kind;
        if (kind == KIND_ROTATION) {
            if (e.byOperators || e.body[2] != 0 || e.body[3] != 0 || uint256(e.body[1]) >> 160 != 0) {
                revert NonCanonicalBody();
            }
            return _applyRotation(
                s,
                e.subject,
                e.seq,
                e.prev,
                e.timestamp,
                e.signers,
                e.threshold,
                e.body[0],
                address(uint160(uint256(e.body[1]))),
                e.operators,
                e.signatures
            );
        }
        if (kind == KIND_DELEGATION) {
            if (e.byOperators || e.body[0] != 0 || e.body[1] != 0 || e.body[2] != 0 || e.body[3] != 0) {
                revert NonCanonicalBody();
            }
            return _applyDelegation(s, e.subject, e.seq, e.prev, e.timestamp, e.operators, e.signers, e.threshold, e.signatures);
        }
        _checkNoOperatorInput(e.operators);
        if (e.byOperators) {
            // Operators sign updates only: a revocation (or anything else) by them is refused.
            if (kind != KIND_UPDATE) revert WrongKind(kind);
            return _applyOperatorUpdate(s, e.subject, e.seq, e.prev, e.timestamp, e.body, e.signers, e.threshold, e.signatures);
        }
        return _applyNonEstablishment(
            s, kind, e.subject, e.seq, e.prev, e.timestamp, e.body, e.signers, e.threshold, e.signatures
        );
    }

    function _applyNonEstablishment(
        Subject storage s,
        uint8 kind,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body,
        address[] calldata controllers,
        uint8 threshold,
        bytes calldata signatures
    ) private returns (bytes32 digest) {
        if (_commitment(controllers, threshold) != s.controllers) revert ControllersMismatch();
        digest = _nonEstablishmentDigest(kind, subject, seq, prev, timestamp, body);
        _verify(digest, controllers, threshold, signatures);
        // A Revocation with an empty keyId revokes the whole subject: nothing may follow it.
        if (kind == KIND_REVOCATION && body[0] == _EMPTY_HASH) s.revoked = true;
    }

    function _applyOperatorUpdate(
        Subject storage s,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        bytes32[4] calldata body,
        address[] calldata operators,
        uint8 threshold,
        bytes calldata signatures
    ) private view returns (bytes32 digest) {
        bytes32 stored = s.operators;
        if (stored == 0) revert NoOperators(subject);
        // The stored commitment was made from a checked set (threshold >= 1), so a match implies it.
        if (_commitment(operators, threshold) != stored) revert OperatorsMismatch();
        digest = _nonEstablishmentDigest(KIND_UPDATE, subject, seq, prev, timestamp, body);
        _verify(digest, operators, threshold, signatures);
    }

    /// Check a rotation against the stored pre-rotation commitment and its signatures, then move
    /// the controller set forward and set the governor and the operator set in force.
    function _applyRotation(
        Subject storage s,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        address[] calldata controllers,
        uint8 threshold,
        bytes32 nextCommitment,
        address governor,
        OperatorSet calldata operators,
        bytes calldata signatures
    ) private returns (bytes32 digest) {
        bytes32 committed = s.nextCommitment;
        if (committed == 0) revert NoNextCommitment();
        _checkControllerSet(controllers, threshold);
        if (_commitment(controllers, threshold) != committed) revert CommitmentMismatch();
        bytes32 operatorCommitment = _operatorCommitment(operators);
        digest = _rotationDigest(
            subject, seq, prev, timestamp, controllers, threshold, nextCommitment, governor, _operatorSetHash(operators)
        );
        _verify(digest, controllers, threshold, signatures);
        s.controllers = committed;
        s.nextCommitment = nextCommitment;
        if (s.governor != governor) s.governor = governor;
        if (s.operators != operatorCommitment) s.operators = operatorCommitment;
    }

    function _applyDelegation(
        Subject storage s,
        bytes32 subject,
        uint64 seq,
        bytes32 prev,
        uint64 timestamp,
        OperatorSet calldata operators,
        address[] calldata controllers,
        uint8 threshold,
        bytes calldata signatures
    ) private returns (bytes32 digest) {
        if (_commitment(controllers, threshold) != s.controllers) revert ControllersMismatch();
        bytes32 operatorCommitment = _operatorCommitment(operators);
        digest = _delegationDigest(subject, seq, prev, timestamp, _operatorSetHash(operators));
        _verify(digest, controllers, threshold, signatures);
        if (s.operators != operatorCommitment) s.operators = operatorCommitment;
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

    function _setHead(
        Subject storage s,
        bytes32 subject,
        uint64 seq,
        uint64 timestamp,
        uint8 kind,
        bool byOperators,
        bytes32 digest
    ) private {
        s.seq = seq;
        s.timestamp = timestamp;
        s.kind = kind;
        s.byOperators = byOperators;
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
    /// ascending, each one of `members` (sorted ascending), at least `threshold` of them.
    function _verify(bytes32 digest, address[] calldata members, uint256 threshold, bytes calldata signatures)
        private
        pure
    {
        uint256 count = signatures.length / 65;
        if (signatures.length != count * 65) revert BadSignaturesLength(signatures.length);
        if (count < threshold) revert BelowThreshold(count, threshold);
        address last = address(0);
        uint256 j = 0;
        uint256 n = members.length;
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
            while (j < n && members[j] < signer) ++j;
            if (j == n || members[j] != signer) revert NotAController(signer);
            ++j;
        }
    }
}
